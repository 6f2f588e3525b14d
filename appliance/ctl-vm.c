/* goldctl machine vm: boot a machine's snapshot (a lost laptop's last state)
 * as a QEMU VM on the appliance. This file only turns argv (and, with -c, the
 * goldcached config) into struct vm_opts and prints; the work is in
 * appliance/vm.h.
 *
 * Which gold version the snapshot runs on: --image NAME[@VERSION], else the
 * one recorded beside the snapshot at commit (snapshot_gold: the agent's
 * "gold", or what goldcached assigned the machine then), else the config's:
 * the machine's profile's image, pinned version or the store's current one. The kernel, initramfs
 * and extra kernel arguments come from --kernel/--initrd/--append or from that config image; never
 * from a build folder. Reads the store only (no daemon needed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/ctl.h"
#include "appliance/snapshot.h"
#include "appliance/vm.h"
#include "config/config.h"
#include "lib/util.h"

/* Prints a as one shell word (single quotes when it holds anything else than
 * plain characters), for --dry-run lines an operator can paste. */
static void print_word(const char *a)
{
	if (*a && strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
			    "_@%+=:,./-") == strlen(a)) {
		fputs(a, stdout);
		return;
	}
	putchar('\'');
	for (; *a; a++) {
		if (*a == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*a);
	}
	putchar('\'');
}

/* ":N" or "ADDR:N" with N a display number (0-99) and ADDR an IPv4 address. */
static int vnc_ok(const char *v)
{
	const char *colon = strrchr(v, ':');
	uint32_t n;

	if (!colon || colon - v > 15 || strspn(v, "0123456789.") != (size_t)(colon - v))
		return 0;
	return parse_u32(colon + 1, &n) == 0 && n < 100;
}

/* The config's view of machine: its profile's image. 0, CTL_NOT_FOUND (printed). */
static int from_config(const struct config *cfg, const char *machine,
		       const struct config_image **img)
{
	const struct config_machine *m = config_machine_by_name(cfg, machine);
	const struct config_profile *pr = NULL;
	struct config_match match;
	uint8_t mac[6];

	if (m) {
		pr = m->profile_ref;
	} else if (config_mac_parse(machine, mac) == 0 &&
		   config_machine_by_mac(cfg, mac, &match) == 0 && match.profile) {
		/* an unnamed machine is named by its MAC (aa-bb-..) and may match a group */
		pr = match.profile;
	} else {
		fprintf(stderr,
			"goldctl: unknown machine '%s': not in %s (goldctl machine list shows the "
			"machines goldcached knows)\n",
			machine, cfg->path);
		return CTL_NOT_FOUND;
	}
	if (!pr || !pr->image_ref) {
		fprintf(stderr, "goldctl: machine '%s' has no profile image in %s\n", machine,
			cfg->path);
		return CTL_NOT_FOUND;
	}
	*img = pr->image_ref;
	return 0;
}

static json_t *plan_json(const struct vm_plan *p, int dry_run)
{
	json_t *argv = json_array();

	for (size_t i = 0; i < p->argc; i++)
		json_array_append_new(argv, json_string(p->argv[i]));
	return json_pack("{s:s, s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:o, s:b}", "machine",
			 p->machine, "snapshot", (json_int_t)p->snapshot, "image", p->image,
			 "image_version", (json_int_t)p->image_version, "gold", p->gold_path,
			 "volume", p->volume_path, "accel", p->accel, "cmdline", p->cmdline, "argv",
			 argv, "dry_run", dry_run);
}

static int cmd_vm(struct ctl *c, int argc, char **argv)
{
	const char *conf = NULL, *image = NULL, *mem = NULL, *dry = NULL, *nonet = NULL;
	const char *conf2 = NULL, *mem2 = NULL, *resume = NULL;
	struct vm_opts o = {0};
	struct export_opts eo = {.progress = ctl_progress, .progress_arg = c};
	struct config *cfg = NULL;
	const struct config_image *profile_img = NULL;
	struct config_diag diag;
	struct vm_plan p = {0};
	struct store *s = NULL;
	char machine[65], img[65], *wd = NULL;
	uint32_t snap, ver = 0;
	int r, rc = CTL_FAILED, code = 0;

	if ((argc = ctl_take_opt(argc, argv, "--config", 1, &conf)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "-c", 1, &conf2)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--image", 1, &image)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--kernel", 1, &o.kernel)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--initrd", 1, &o.initrd)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--append", 1, &o.append)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--work-dir", 1, &o.work_dir)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--memory", 1, &mem)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "-m", 1, &mem2)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--vnc", 1, &o.vnc)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--accel", 1, &o.accel)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--no-net", 0, &nonet)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--resume", 0, &resume)) < 0 ||
	    (argc = ctl_take_opt(argc, argv, "--dry-run", 0, &dry)) < 0 ||
	    (argc = ctl_no_more_opts(c, argc, argv)) < 0)
		return CTL_USAGE;
	if (argc != 1)
		return ctl_usage(c);
	conf = conf ? conf : conf2;
	mem = mem ? mem : mem2;
	if (image_ref_parse(argv[0], machine, &snap) < 0) {
		fprintf(stderr,
			"goldctl: invalid machine reference '%s': use NAME or NAME@SNAPSHOT\n",
			argv[0]);
		return ctl_usage(c);
	}
	if (image && image_ref_parse(image, img, &ver) < 0) {
		fprintf(stderr, "goldctl: invalid --image '%s': use NAME or NAME@VERSION\n", image);
		return ctl_usage(c);
	}
	if (mem && (parse_u32(mem, &o.mem_mib) < 0 || o.mem_mib < 64 || o.mem_mib > 1048576)) {
		fprintf(stderr, "goldctl: --memory '%s' is not a size in MiB (64 to 1048576)\n",
			mem);
		return ctl_usage(c);
	}
	if (o.accel && strcmp(o.accel, "kvm") != 0 && strcmp(o.accel, "tcg") != 0) {
		fprintf(stderr, "goldctl: --accel '%s' is not kvm or tcg\n", o.accel);
		return ctl_usage(c);
	}
	if (o.vnc && !vnc_ok(o.vnc)) {
		fprintf(stderr, "goldctl: --vnc '%s' is not a display like :1 or ADDR:1\n", o.vnc);
		return ctl_usage(c);
	}
	o.machine = machine;
	o.snapshot = snap;
	o.no_net = nonet != NULL;
	o.resume = resume != NULL;
	if (image) {
		o.image = img;
		o.image_version = ver;
	}

	if (conf) {
		config_diag_init(&diag);
		r = config_load_file(conf, &cfg, &diag);
		if (r < 0) {
			config_diag_print(&diag, stderr);
			config_diag_release(&diag);
			return r == -EINVAL ? CTL_USAGE : CTL_FAILED;
		}
		config_diag_release(&diag);
		/* the config's store, unless --store or GOLDCACHE_STORE named another */
		if (strcmp(c->store_dir, STORE_DEFAULT_DIR) == 0)
			c->store_dir = cfg->appliance.store_dir;
		if ((rc = from_config(cfg, machine, &profile_img)) != 0)
			goto out;
		if (!o.work_dir)
			o.work_dir = wd = xasprintf("%s/vm", cfg->appliance.state_dir);
	}
	if ((rc = ctl_open_store(c, 0, &s)) != 0)
		goto out;
	/* the gold version: --image, else what the snapshot recorded, else the config */
	if (!o.image) {
		uint32_t id = snap;

		if ((id || snapshot_latest(s, machine, &id) == 0) &&
		    snapshot_gold(s, machine, id, img, &ver) == 0) {
			o.image = img;
			o.image_version = ver;
		} else if (profile_img) {
			o.image = profile_img->name;
			o.image_version = profile_img->version_id;
		}
	}
	if (!o.image) {
		fprintf(stderr,
			"goldctl: which gold image does '%s' run? its snapshot does not record it: "
			"give --image NAME[@VERSION] or the goldcached config with -c FILE\n",
			machine);
		rc = CTL_USAGE;
		goto out;
	}
	if (cfg) {
		/* boot files of the gold image the VM runs */
		const struct config_image *ci = config_image_by_name(cfg, o.image);

		if (ci) {
			o.kernel = o.kernel ? o.kernel : ci->kernel;
			o.initrd = o.initrd ? o.initrd : ci->initrd;
			o.cmdline = ci->cmdline;
		}
	}
	if (!o.kernel || !o.initrd) {
		fprintf(stderr,
			"goldctl: no netboot %s for '%s': give --kernel FILE --initrd FILE, or -c "
			"FILE whose image '%s' names kernel: and initrd:\n",
			!o.kernel ? "kernel" : "initramfs", machine, o.image);
		rc = CTL_USAGE;
		goto out;
	}
	if (!o.work_dir)
		o.work_dir = "/var/tmp/goldcache-vm";
	r = vm_plan(s, &o, &p);
	if (r < 0) {
		fprintf(stderr, "goldctl: %s\n", p.error);
		rc = p.bad_file ? CTL_FAILED : r == -EINVAL ? CTL_USAGE : ctl_exit_code(r);
		goto out;
	}
	if (dry) {
		if (c->json) {
			ctl_json_print(plan_json(&p, 1));
		} else {
			for (size_t i = 0; i < p.argc; i++) {
				if (i)
					putchar(' ');
				print_word(p.argv[i]);
			}
			putchar('\n');
		}
		rc = CTL_OK;
		goto out;
	}
	r = vm_materialise(s, &p, &eo);
	ctl_progress_end(c);
	if (r < 0) {
		fprintf(stderr, "goldctl: %s\n", p.error);
		rc = ctl_exit_code(r);
		goto out;
	}
	store_free(s);
	s = NULL;
	fprintf(stderr,
		"goldctl: booting %s@%u on %s@%u (%s); disks in %s%s; the store is not written\n",
		p.machine, p.snapshot, p.image, p.image_version, p.accel, o.work_dir,
		p.resumed ? " (volume: the previous run's copy, --resume)" : "");
	fflush(stdout);
	r = vm_run(&p, &code);
	if (r < 0) {
		fprintf(stderr, "goldctl: cannot run %s: %s (install QEMU: qemu-system-x86)\n",
			p.argv[0], strerror(-r));
		rc = CTL_FAILED;
		goto out;
	}
	if (c->json) {
		json_t *j = plan_json(&p, 0);

		json_object_set_new(j, "resumed", json_boolean(p.resumed));
		json_object_set_new(j, "exit_code", json_integer(code));
		ctl_json_print(j);
	}
	if (code != 0)
		fprintf(stderr, "goldctl: %s exited with status %d\n", p.argv[0], code);
	rc = code == 0 ? CTL_OK : CTL_FAILED;
out:
	vm_plan_release(&p);
	if (s)
		store_free(s);
	config_free(cfg);
	free(wd);
	return rc;
}

const struct ctl_command ctl_vm_commands[] = {
	{"machine", "vm",
	 "[-c CONFIG] [--image NAME[@VERSION]] [--kernel FILE --initrd FILE] [--append ARGS] "
	 "[--work-dir DIR] [-m MiB] [--vnc [ADDR]:N] [--accel kvm|tcg] [--no-net] [--resume] "
	 "[--dry-run] "
	 "NAME[@SNAPSHOT]",
	 "boot a snapshot (default: newest) of NAME on its gold image as a QEMU VM (the store is "
	 "only read)",
	 cmd_vm},
	{NULL, NULL, NULL, NULL, NULL},
};
