/* Per-machine iPXE scripts (see bootscript.h). The templates are compiled into
 * the binary with .incbin (bootscripts/module.mk makes templates depend on the
 * .ipxe files), so a running goldcached never reads a template from a path an
 * operator or attacker could change under it; a template change is a rebuild. */
#include "bootscripts/bootscript.h"

#include <errno.h>
#include <string.h>

#include "bootscripts/render.h"
#include "lib/log.h"
#include "lib/util.h"

#define EMBED(sym, file)                                \
	__asm__(".section .rodata\n"                    \
		".global " #sym "_start\n"              \
		".global " #sym "_end\n"                \
		".balign 16\n" #sym "_start:\n"         \
		".incbin \"" file "\"\n" #sym "_end:\n" \
		".byte 0\n"                             \
		".previous\n");                         \
	extern const char sym##_start[], sym##_end[]

EMBED(gc_tmpl_cache, "bootscripts/cache.ipxe");
EMBED(gc_tmpl_stream, "bootscripts/stream.ipxe");
EMBED(gc_tmpl_sanboot, "bootscripts/sanboot.ipxe");
EMBED(gc_tmpl_refuse, "bootscripts/refuse.ipxe");

static const char *const mode_names[BOOT_MODE_N] = {"cache", "stream", "sanboot", "refuse"};

const char *boot_mode_name(enum boot_mode m)
{
	return (unsigned)m < BOOT_MODE_N ? mode_names[m] : "?";
}

int boot_mode_parse(const char *s, enum boot_mode *out)
{
	for (unsigned i = 0; i < BOOT_MODE_N; i++)
		if (s && strcmp(s, mode_names[i]) == 0) {
			*out = (enum boot_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *bootscript_template(enum boot_mode m, size_t *len)
{
	const char *s, *e;

	switch (m) {
	case BOOT_CACHE:
		s = gc_tmpl_cache_start, e = gc_tmpl_cache_end;
		break;
	case BOOT_STREAM:
		s = gc_tmpl_stream_start, e = gc_tmpl_stream_end;
		break;
	case BOOT_SANBOOT:
		s = gc_tmpl_sanboot_start, e = gc_tmpl_sanboot_end;
		break;
	default:
		s = gc_tmpl_refuse_start, e = gc_tmpl_refuse_end;
		break;
	}
	*len = (size_t)(e - s);
	return s;
}

int bootscript_render(const struct bootscript_params *p, char **out, size_t *len)
{
	const struct render_var all[] = {
		{.name = "mac", .value = p->mac},
		{.name = "machine", .value = p->machine},
		{.name = "image", .value = p->image},
		{.name = "version", .value = p->version},
		{.name = "base_url", .value = p->base_url},
		{.name = "kernel_url", .value = p->kernel_url},
		{.name = "initrd_url", .value = p->initrd_url},
		{.name = "initiator_iqn", .value = p->initiator_iqn},
		{.name = "target_iqn", .value = p->target_iqn},
		{.name = "portal_addr", .value = p->portal_addr},
		{.name = "portal_port", .value = p->portal_port},
		{.name = "chap_user", .value = p->chap_user},
		{.name = "chap_secret", .value = p->chap_secret},
		{.name = "cmdline", .value = p->cmdline ? p->cmdline : "", .words = 1},
	};
	struct render_var vars[ARRAY_SIZE(all)];
	size_t n = 0, tlen, pos = 0;
	const char *tmpl = bootscript_template(p->mode, &tlen);
	int rc;

	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (all[i].value)
			vars[n++] = all[i];
	rc = render_template(tmpl, tlen, vars, n, out, len, &pos);
	if (rc < 0) {
		int w = 0;

		while (pos + (size_t)w < tlen && w < 40 && tmpl[pos + w] != '\n')
			w++;
		/* the value itself is not logged: it may be a CHAP secret */
		log_error("cannot render the %s script for '%s': %s at \"%.*s\"",
			  boot_mode_name(p->mode), p->mac ? p->mac : "?",
			  rc == -EILSEQ	  ? "value has characters unsafe in an iPXE script"
			  : rc == -ENOENT ? "no value for variable"
					  : strerror(-rc),
			  w, tmpl + pos);
	}
	return rc;
}
