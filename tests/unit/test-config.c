/* Unit tests for config/: every rule has a config that breaks it and an
 * assertion on the exact message (FILE:LINE:COL: PATH: text); good configs
 * load with the right values and defaults; lookups, diff, the printer's round
 * trip, the limits and the host checks (on lo only). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/io.h"
#include "lib/util.h"
#include "tests/tap.h"

#define HEAD                       \
	"appliance:\n"             \
	"  interface: gcbr0\n"     \
	"  listen: 10.77.0.1/24\n" \
	"  dhcp:\n"                \
	"    range: 10.77.0.100-10.77.0.200\n"
/* lines 1-5 above; images start at line 6 */
#define IMAGES             \
	"images:\n"        \
	"  - name: deb\n"  \
	"    kernel: /k\n" \
	"    initrd: /i\n"
/* lines 6-9; profiles start at line 10 */
#define PROFILES           \
	"profiles:\n"      \
	"  - name: desk\n" \
	"    image: deb\n"
/* lines 10-12; machines start at line 13 */

static int load(const char *yaml, struct config **cfg, struct config_diag *d)
{
	config_diag_release(d);
	config_diag_init(d);
	return config_load_buffer("t.yaml", yaml, strlen(yaml), cfg, d);
}

static bool has_msg(const struct config_diag *d, const char *want)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->msgs[i], want))
			return true;
	return false;
}

/* Loads yaml, expects failure with a message containing want. */
static void bad(const char *yaml, const char *want, const char *desc)
{
	struct config_diag d;
	struct config *cfg = NULL;
	int r;

	config_diag_init(&d);
	r = load(yaml, &cfg, &d);
	if (!ok(r < 0 && !cfg && has_msg(&d, want), "%s", desc)) {
		diag("want a message containing: %s", want);
		for (size_t i = 0; i < d.n; i++)
			diag("got: %s", d.msgs[i]);
	}
	config_free(cfg);
	config_diag_release(&d);
}

static struct config *good(const char *yaml, const char *desc)
{
	struct config_diag d;
	struct config *cfg = NULL;

	config_diag_init(&d);
	if (!ok(load(yaml, &cfg, &d) == 0 && cfg, "%s", desc))
		for (size_t i = 0; i < d.n; i++)
			diag("got: %s", d.msgs[i]);
	config_diag_release(&d);
	return cfg;
}

static void test_values(void)
{
	uint8_t mac[6];
	char buf[CONFIG_MAC_STRLEN], dur[32];
	uint64_t s = 0;

	is_int(config_mac_parse("52:54:00:AB:cd:0F", mac), 0, "mac with colons, mixed case");
	config_mac_format(mac, buf);
	is_str(buf, "52:54:00:ab:cd:0f", "mac normalised to lower-case colon form");
	is_int(config_mac_parse("52-54-00-ab-cd-0f", mac), 0, "mac with hyphens");
	is_int(config_mac_parse("52:54-00:ab:cd:0f", mac), -EINVAL, "mixed separators refused");
	is_int(config_mac_parse("52:54:00:ab:cd", mac), -EINVAL, "five pairs refused");
	is_int(config_mac_parse("52:54:00:ab:cd:0g", mac), -EINVAL, "non-hex refused");
	is_int(config_mac_parse("525400abcd0f", mac), -EINVAL, "no separators refused");
	is_int(config_duration_parse("30s", &s), 0, "30s");
	is_int(s, 30, "30s = 30");
	is_int(config_duration_parse("15m", &s), 0, "15m");
	is_int(s, 900, "15m = 900");
	is_int(config_duration_parse("1h", &s), 0, "1h");
	is_int(s, 3600, "1h = 3600");
	is_int(config_duration_parse("2d", &s), 0, "2d");
	is_int(s, 172800, "2d = 172800");
	is_int(config_duration_parse("15", &s), -EINVAL, "no unit refused");
	is_int(config_duration_parse("1h30m", &s), -EINVAL, "two units refused");
	is_int(config_duration_parse("m", &s), -EINVAL, "no number refused");
	is_int(config_duration_parse("-1s", &s), -EINVAL, "sign refused");
	is_int(config_duration_parse("1 h", &s), -EINVAL, "space refused");
	is_int(config_duration_parse("1H", &s), -EINVAL, "upper-case unit refused");
	is_int(config_duration_parse("9999999999999d", &s), -ERANGE, "overflow refused");
	is_str(config_duration_format(5400, dur, sizeof(dur)), "90m", "90m formatted");
	is_str(config_duration_format(86400, dur, sizeof(dur)), "1d", "1d formatted");
	is_str(config_duration_format(61, dur, sizeof(dur)), "61s", "61s formatted");
}

static void test_example(void)
{
	const char *src = getenv("GC_SRC");
	char path[4096];
	struct config_diag d;
	struct config *cfg = NULL;
	const struct config_profile *p;
	const struct config_machine *m;

	snprintf(path, sizeof(path), "%s/config/example.yaml", src && *src ? src : ".");
	config_diag_init(&d);
	if (!ok(config_load_file(path, &cfg, &d) == 0, "config/example.yaml loads")) {
		config_diag_print(&d, stdout);
		return;
	}
	is_int(cfg->n_images, 3, "example: 3 images");
	is_int(cfg->n_profiles, 4, "example: 4 profiles");
	is_int(cfg->n_machines, 3, "example: 3 machines");
	is_int(cfg->n_groups, 2, "example: 2 groups");
	is_str(cfg->appliance.listen, "10.77.0.1", "listen without prefix");
	is_int(cfg->appliance.listen_prefix, 24, "listen prefix");
	is_str(cfg->appliance.iscsi.portal, "10.77.0.1:3260", "portal");
	is_int(cfg->appliance.iscsi.portal_port, 3260, "portal port");
	p = config_profile_by_name(cfg, "classroom");
	ok(p && !p->persist && p->mode == CONFIG_MODE_CACHE, "classroom: cache, not persistent");
	p = config_profile_by_name(cfg, "hpc");
	ok(p && p->mode == CONFIG_MODE_STREAM && p->image_ref &&
		   !strcmp(p->image_ref->name, "rocky9-hpc"),
	   "hpc: stream of rocky9-hpc");
	m = config_machine_by_name(cfg, "staff-laptop-02");
	ok(m && !strcmp(m->mac_str, "52:54:00:12:34:57") && !m->chap_secret_file,
	   "hyphen MAC normalised, no secret file");
	is_str(config_image_by_name(cfg, "rocky9-hpc")->version, "3", "pinned version");
	is_int(config_image_by_name(cfg, "rocky9-hpc")->version_id, 3, "pinned version id");
	is_int(config_image_by_name(cfg, "debian12")->version_id, 0, "current is version id 0");
	config_free(cfg);
	config_diag_release(&d);
}

static void test_defaults(void)
{
	struct config *cfg = good(HEAD IMAGES PROFILES "machines:\n"
						       "  - mac: 52:54:00:12:34:56\n"
						       "    profile: desk\n",
				  "minimal config loads");
	const struct config_appliance *a;

	if (!cfg)
		return;
	a = &cfg->appliance;
	is_int(a->http_port, 8080, "default http_port");
	is_int(a->dhcp.mode, CONFIG_DHCP_FULL, "default dhcp mode full");
	is_int(a->dhcp.lease_time_s, 3600, "default lease 1h");
	is_str(a->tftp_root, "/var/lib/goldcache/tftp", "default tftp_root");
	is_str(a->store_dir, "/var/lib/goldcache/store", "default store_dir");
	is_str(a->state_dir, "/var/lib/goldcache/state", "default state_dir");
	ok(a->admin_token_file == NULL, "no admin token file by default");
	is_str(a->iscsi.portal, "10.77.0.1:3260", "portal defaults to listen:3260");
	is_str(a->iscsi.iqn_prefix, "iqn.2026-11.local.goldcache", "default iqn prefix");
	is_str(cfg->images[0].version, "current", "default image version");
	is_int(cfg->profiles[0].mode, CONFIG_MODE_CACHE, "default mode cache");
	is_int(cfg->profiles[0].sync_interval_s, 900, "default sync 15m");
	is_int(cfg->profiles[0].retention, 14, "default retention 14");
	ok(cfg->profiles[0].persist, "default persist true");
	ok(cfg->profiles[0].volume_size == CONFIG_DEFAULT_VOLUME_SIZE, "default volume_size 8G");
	is_str(cfg->machines[0].name, "52-54-00-12-34-56", "default machine name from MAC");
	is_int(cfg->unknown.policy, CONFIG_UNKNOWN_REFUSE, "default policy refuse");
	config_free(cfg);

	cfg = good("appliance:\n  interface: br0\n  listen: 10.0.0.1\n  dhcp:\n    mode: off\n",
		   "appliance only, dhcp off");
	if (cfg)
		ok(cfg->n_machines == 0 && cfg->n_images == 0 && !cfg->appliance.dhcp.range,
		   "empty lists");
	config_free(cfg);
	cfg = good("appliance:\n  interface: br0\n  listen: 10.0.0.1\n"
		   "  dhcp: {mode: proxy, range: 10.0.0.0}\n"
		   "  iscsi: {portal: 10.0.0.1}\nmachines:\nimages: []\n",
		   "proxy mode, portal without port, empty lists");
	if (cfg) {
		is_str(cfg->appliance.iscsi.portal, "10.0.0.1:3260", "portal gets :3260");
		is_int(cfg->appliance.dhcp.mode, CONFIG_DHCP_PROXY, "proxy mode");
	}
	config_free(cfg);
}

static void test_syntax_errors(void)
{
	bad("appliance: [1, 2\n", "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']'",
	    "malformed YAML: line, column and libyaml's reason");
	bad("appliance:\n  interface: gcbr0\n\tlisten: x\n", "t.yaml:3:1: YAML syntax error",
	    "tab indentation is a syntax error");
	bad("", "t.yaml:1:1: the config is empty", "empty file");
	bad("# only a comment\n", "the config is empty", "comment-only file");
	bad("- a\n- b\n",
	    "t.yaml:1:1: expected the config as a mapping of keys to values, found a list",
	    "top level list");
	bad(HEAD "---\n" HEAD, "a second YAML document", "two documents");
	bad("x: &a [1]\ny: *a\n", "t.yaml:2:4: y: YAML aliases (*a) are not supported",
	    "aliases refused");
	bad(HEAD "images:\n  - &img {name: a}\n",
	    "t.yaml:7:5: images: YAML anchors (&img) are not supported", "anchors refused");
	bad(HEAD "images:\n  - !!map {name: a}\n",
	    "YAML tags (tag:yaml.org,2002:map) are not supported", "tags refused");
	bad("appliance:\n  interface: a\n  listen: 10.0.0.1\n  dhcp: {mode: off}\n"
	    "images:\n  - name: \"a\\0b\"\n",
	    "t.yaml:6:11: images[0].name: \"a\\x00b\" contains control characters",
	    "NUL byte refused");
	bad("appliance:\n  interface: a\n  listen: 10.0.0.1\n  dhcp: {mode: off}\n"
	    "images:\n  - name: a\n    cmdline: \"x\\ny\"\n",
	    "t.yaml:7:14: images[0].cmdline: \"x\\x0ay\" contains control characters",
	    "newline in cmdline refused (it would inject iPXE commands)");
}

static void test_schema_errors(void)
{
	bad("appliance:\n  intreface: gcbr0\n  listen: 10.0.0.1\n",
	    "t.yaml:2:3: appliance.intreface: unknown key \"intreface\" (did you mean "
	    "\"interface\"?)",
	    "unknown key with a suggestion");
	bad(HEAD "frobnicate: 1\n",
	    "t.yaml:6:1: frobnicate: unknown key \"frobnicate\" (expected one of: appliance, "
	    "images, "
	    "profiles, machines, groups, unknown_machines)",
	    "unknown key listing the valid ones");
	bad(HEAD "  listen: 10.77.0.2\n",
	    "t.yaml:6:3: appliance.listen: duplicate key (first given at line 3)", "duplicate key");
	bad("appliance:\n  listen: 10.0.0.1\n  dhcp: {mode: off}\n",
	    "t.yaml:2:3: appliance: missing required key \"interface\" in the appliance section",
	    "missing required key");
	bad("images: []\n", "t.yaml:1:1: missing required key \"appliance\"", "missing appliance");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.300\n",
	    "t.yaml:3:11: appliance.listen: \"10.77.0.300\" is not an IPv4 address", "bad listen");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.0.0.1/33\n",
	    "appliance.listen: \"10.0.0.1/33\" is not an IPv4 address", "bad prefix");
	bad(HEAD "  http_port: 0\n",
	    "t.yaml:6:14: appliance.http_port: \"0\" is not a port number 1-65535", "port 0");
	bad(HEAD "  http_port: [80]\n",
	    "t.yaml:6:14: appliance.http_port: expected a port number 1-65535, found a list",
	    "port as a list");
	bad(HEAD "    mode: ful\n",
	    "t.yaml:6:11: appliance.dhcp.mode: \"ful\" is not valid (expected one of full, proxy "
	    "or off)",
	    "bad dhcp mode");
	bad(HEAD "    lease_time: 60\n",
	    "t.yaml:6:17: appliance.dhcp.lease_time: \"60\" is not a duration like 30s, 15m, 1h or "
	    "1d, "
	    "from 2m to 365d",
	    "duration without unit");
	bad(HEAD "    lease_time: 1m\n", "appliance.dhcp.lease_time: \"1m\" is not a duration",
	    "lease below dnsmasq's minimum");
	bad(HEAD "  tftp_root: tftp\n",
	    "t.yaml:6:14: appliance.tftp_root: \"tftp\" is not an absolute path", "relative path");
	bad(HEAD "images:\n  - name: deb ian\n",
	    "t.yaml:7:11: images[0].name: \"deb ian\" is not a valid name", "bad name");
	bad(HEAD "images:\n  - kernel: /k\n",
	    "t.yaml:7:5: images[0]: missing required key \"name\" in an image",
	    "image without name");
	bad(HEAD "images:\n  name: x\n", "t.yaml:7:3: images: expected a list of images",
	    "images as a mapping");
	bad(HEAD IMAGES PROFILES "    mode: streaming\n",
	    "t.yaml:13:11: profiles[0].mode: \"streaming\" is not valid (expected one of cache, "
	    "stream "
	    "or sanboot)",
	    "bad profile mode");
	bad(HEAD IMAGES PROFILES "    persist: yes\n",
	    "t.yaml:13:14: profiles[0].persist: \"yes\" is not a boolean (expected true or false)",
	    "yes is not a boolean");
	bad(HEAD IMAGES PROFILES "    retention: 0\n",
	    "profiles[0].retention: \"0\" is not a whole number from 1 to 100000", "retention 0");
	bad(HEAD IMAGES PROFILES "    volume_size: 1000K\n",
	    "profiles[0].volume_size: \"1000K\" is not a size in whole MiB",
	    "volume not whole MiB");
	bad(HEAD IMAGES PROFILES "    volume_size: 20X\n",
	    "profiles[0].volume_size: \"20X\" is not a size", "volume size bad unit");
	bad(HEAD IMAGES PROFILES "    volume_size: 17T\n",
	    "profiles[0].volume_size: \"17T\" is not a size", "volume past 16 TiB");
	{
		struct config *c2 = good(HEAD IMAGES PROFILES "    volume_size: 20G\n", "20G");

		ok(c2 && c2->profiles[0].volume_size == (20ull << 30), "volume_size 20G parsed");
		config_free(c2);
	}
	bad(HEAD IMAGES PROFILES "    sync_interval: 1s\n",
	    "profiles[0].sync_interval: \"1s\" is not a duration", "sync too often");
	bad(HEAD IMAGES PROFILES "machines:\n  - mac: 52:54:zz:12:34:56\n    profile: desk\n",
	    "t.yaml:14:10: machines[0].mac: \"52:54:zz:12:34:56\" is not a MAC address (expected "
	    "six "
	    "hex pairs like 52:54:00:12:34:56)",
	    "bad MAC");
	bad(HEAD IMAGES PROFILES "groups:\n  - match: \"52:54:00:g*\"\n    profile: desk\n",
	    "t.yaml:14:12: groups[0].match: \"52:54:00:g*\" is not a MAC pattern", "bad pattern");
	bad(HEAD "images:\n  - name:\n", "t.yaml:7:10: images[0].name: no value", "null name");
	bad(HEAD "images:\n  - name: a\n    version: latest\n",
	    "t.yaml:8:14: images[0].version: \"latest\" is not a version (expected current, or a "
	    "version number",
	    "bad version");
	bad(HEAD "images:\n  - name: a\n    version: 0\n",
	    "images[0].version: \"0\" is not a version", "version 0");
	bad(HEAD "unknown_machines: {policy: maybe}\n",
	    "unknown_machines.policy: \"maybe\" is not valid (expected one of refuse or profile)",
	    "bad policy");
	bad(HEAD "appliance: {}\n", "t.yaml:6:1: appliance: duplicate key (first given at line 1)",
	    "duplicate section");
	bad(HEAD "? [a]\n: b\n", "t.yaml:6:3: a key must be a plain word, found a list",
	    "complex key");
}

static void test_semantic_errors(void)
{
	bad(HEAD IMAGES PROFILES "machines:\n"
				 "  - mac: 52:54:00:12:34:56\n"
				 "    profile: desk\n"
				 "  - mac: 52-54-00-12-34-56\n"
				 "    profile: desk\n",
	    "t.yaml:16:10: machines[1].mac: duplicate MAC 52:54:00:12:34:56 (already used by "
	    "machines[0] at line 14",
	    "duplicate MAC across spellings");
	bad(HEAD IMAGES PROFILES "machines:\n"
				 "  - mac: 52:54:00:12:34:56\n"
				 "    name: pc\n"
				 "    profile: desk\n"
				 "  - mac: 52:54:00:12:34:57\n"
				 "    name: pc\n"
				 "    profile: desk\n",
	    "t.yaml:17:5: machines[1]: duplicate machine name \"pc\" (already used by machines[0] "
	    "at "
	    "line 14",
	    "duplicate machine name");
	bad(HEAD IMAGES PROFILES "machines:\n"
				 "  - mac: 52:54:00:12:34:56\n"
				 "    name: 52-54-00-12-34-57\n"
				 "    profile: desk\n"
				 "  - mac: 52:54:00:12:34:57\n"
				 "    profile: desk\n",
	    "machines[1]: its default name \"52-54-00-12-34-57\" is the name of machines[0]",
	    "default name clashing with an explicit one");
	bad(HEAD IMAGES PROFILES "  - name: desk\n    image: deb\n",
	    "t.yaml:13:5: profiles[1]: duplicate profile name \"desk\" (already used by "
	    "profiles[0] at "
	    "line 11",
	    "duplicate profile");
	bad(HEAD IMAGES "  - name: deb\n",
	    "t.yaml:10:5: images[1]: duplicate image name \"deb\" (already used by images[0] at "
	    "line 7",
	    "duplicate image");
	bad(HEAD IMAGES "profiles:\n  - name: desk\n    image: debain\n",
	    "t.yaml:12:12: profiles[0].image: unknown image \"debain\" (defined images: deb)",
	    "unknown image");
	bad(HEAD IMAGES PROFILES "machines:\n  - mac: 52:54:00:12:34:56\n    profile: dekstop\n",
	    "t.yaml:15:14: machines[0].profile: unknown profile \"dekstop\" (defined profiles: "
	    "desk)",
	    "machine with an unknown profile");
	bad(HEAD IMAGES PROFILES "groups:\n  - match: 52:54:00:*\n    profile: lab\n",
	    "t.yaml:15:14: groups[0].profile: unknown profile \"lab\" (defined profiles: desk)",
	    "group with an unknown profile");
	bad(HEAD "machines:\n  - mac: 52:54:00:12:34:56\n    profile: x\n",
	    "machines[0].profile: unknown profile \"x\" (no profiles are defined)", "no profiles");
	bad(HEAD IMAGES PROFILES "unknown_machines:\n  policy: profile\n",
	    "t.yaml:14:3: unknown_machines.profile: missing: policy profile needs",
	    "policy w/o profile");
	bad(HEAD IMAGES PROFILES "unknown_machines:\n  policy: refuse\n  profile: desk\n",
	    "t.yaml:15:12: unknown_machines.profile: only used with policy: profile",
	    "profile with refuse");
	bad(HEAD "images:\n  - name: w\nprofiles:\n  - name: p\n    image: w\n",
	    "t.yaml:10:12: profiles[0].image: mode cache boots a kernel, but image \"w\" (line 7) "
	    "has no "
	    "kernel and initrd",
	    "cache profile needs a kernel");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  dhcp:\n"
	    "    range: 10.78.0.100-10.78.0.200\n",
	    "t.yaml:5:12: appliance.dhcp.range: \"10.78.0.100-10.78.0.200\" is not inside "
	    "10.77.0.1's "
	    "subnet 10.77.0.0 netmask 255.255.255.0",
	    "range outside listen's subnet");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  dhcp:\n"
	    "    range: 10.77.0.1-10.77.0.200\n",
	    "appliance.dhcp.range: \"10.77.0.1-10.77.0.200\" contains the appliance's own address",
	    "range containing listen");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  dhcp:\n"
	    "    range: 10.77.0.200-10.77.0.100\n",
	    "starts after it ends", "reversed range");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  dhcp:\n"
	    "    range: 10.77.0.100\n",
	    "t.yaml:5:12: appliance.dhcp.range: \"10.77.0.100\" is not an address range",
	    "not a range");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  dhcp:\n    mode: full\n",
	    "t.yaml:5:5: appliance.dhcp.range: missing: mode full needs a range",
	    "full without range");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  dhcp:\n"
	    "    mode: proxy\n    range: 10.77.1.0\n",
	    "appliance.dhcp.range: \"10.77.1.0\" is not the network address of 10.77.0.1's subnet",
	    "proxy range not the subnet");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1\n  dhcp:\n"
	    "    mode: off\n    range: 10.77.0.0\n",
	    "a range is only used with mode full or proxy", "range with dhcp off");
	bad(HEAD "  iscsi:\n    iqn_prefix: iqn.2026-13.org.example\n",
	    "t.yaml:7:17: appliance.iscsi.iqn_prefix: \"iqn.2026-13.org.example\" is not a valid "
	    "iSCSI "
	    "qualified name",
	    "bad IQN month");
	bad(HEAD "  iscsi:\n    iqn_prefix: iqn.2026-11.Org.Example\n",
	    "is not a valid iSCSI qualified name", "upper-case IQN");
	bad(HEAD "  iscsi:\n    iqn_prefix: iqn.2026-11.org.example:lab\n",
	    "is not a valid iSCSI qualified name (expected iqn.YYYY-MM.reversed.domain in lower "
	    "case "
	    "without ':'",
	    "colon in the IQN prefix");
	bad(HEAD "  iscsi:\n    iqn_prefix: eui.02004567A425678D\n",
	    "is not a valid iSCSI qualified name", "eui is not an iqn prefix");
	bad(HEAD "  iscsi:\n    portal: 10.77.0.1:99999\n",
	    "t.yaml:7:13: appliance.iscsi.portal: \"10.77.0.1:99999\" is not an iSCSI portal",
	    "bad portal port");
	bad("appliance:\n  interface: gcbr0\n  listen: 0.0.0.0\n  dhcp: {mode: off}\n",
	    "t.yaml:3:11: appliance.listen: 0.0.0.0 is not a unicast address", "listen 0.0.0.0");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.255/24\n  dhcp: {mode: off}\n",
	    "appliance.listen: 10.77.0.255 is the network or broadcast address of /24",
	    "listen on the broadcast address");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  dhcp:\n"
	    "    range: 10.77.0.100-10.77.0.255\n",
	    "t.yaml:5:12: appliance.dhcp.range: \"10.77.0.100-10.77.0.255\" includes the subnet's "
	    "network or broadcast address",
	    "range up to the broadcast address");
	bad("appliance:\n  interface: a/b\n  listen: 10.0.0.1\n  dhcp: {mode: off}\n",
	    "t.yaml:2:14: appliance.interface: \"a/b\" is not an interface name", "bad ifname");
}

static void test_collects(void)
{
	struct config_diag d;
	struct config *cfg = NULL;
	char *y = xstrdup(HEAD IMAGES PROFILES "machines:\n"), *t;
	FILE *f;
	char *out = NULL;
	size_t outlen = 0;

	config_diag_init(&d);
	for (int i = 0; i < 25; i++) {
		t = xasprintf("%s  - mac: bad%d\n    profile: desk\n", y, i);
		free(y);
		y = t;
	}
	is_int(load(y, &cfg, &d), -EINVAL, "25 bad MACs fail");
	is_int(d.total, 25, "all 25 errors counted");
	is_int(d.n, CONFIG_MAX_ERRORS, "the first 20 kept");
	f = open_memstream(&out, &outlen);
	config_diag_print(&d, f);
	fclose(f);
	ok(strstr(out, "t.yaml:14:10: machines[0].mac") && strstr(out, "... and 5 more errors\n"),
	   "printed with a count of the rest");
	free(out);
	free(y);
	config_diag_release(&d);

	/* several kinds at once */
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  lease: 1\n"
	    "images:\n  - name: a\nprofiles:\n  - name: p\n    image: b\n    mode: sanboot\n",
	    "t.yaml:9:12: profiles[0].image: unknown image \"b\"",
	    "semantic errors reported beside schema errors (1/2)");
	bad("appliance:\n  interface: gcbr0\n  listen: 10.77.0.1/24\n  lease: 1\n"
	    "images:\n  - name: a\nprofiles:\n  - name: p\n    image: b\n    mode: sanboot\n",
	    "t.yaml:4:3: appliance.lease: unknown key \"lease\"",
	    "semantic errors reported beside schema errors (2/2)");
}

static void test_limits(void)
{
	struct config_diag d;
	struct config *cfg = NULL;
	size_t n = CONFIG_MAX_FILE_SIZE + 1;
	char *big = xcalloc(1, n), *deep;
	int r;

	config_diag_init(&d);
	memset(big, '#', n);
	r = config_load_buffer("big.yaml", big, n, &cfg, &d);
	ok(r == -EFBIG && has_msg(&d, "big.yaml: the file is 16777217 bytes (at most 16777216)"),
	   "file size limit");
	free(big);

	deep = xcalloc(1, 4000);
	memset(deep, '[', 1000);
	bad(deep, "nested too deeply (at most 16 levels)", "nesting limit");
	free(deep);

	big = xmalloc(4200);
	memset(big, 'a', 4200);
	memcpy(big, HEAD "images:\n  - name: x\n    cmdline: ",
	       strlen(HEAD "images:\n  - name: x\n    cmdline: "));
	big[4199] = '\0';
	bad(big, "images[0].cmdline: value is", "string length limit");
	free(big);

	/* billion laughs needs aliases: the first one stops the parse */
	bad("a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b]\n",
	    "YAML aliases (*a) are not supported", "billion laughs refused");
	config_diag_release(&d);
}

static void test_many_machines(void)
{
	size_t n = CONFIG_MAX_MACHINES, cap = n * 48 + 4096, o;
	char *y = xmalloc(cap);
	struct config_diag d;
	struct config *cfg = NULL;
	struct config_match mt;
	uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, 0};
	uint64_t t0;
	int r;

	o = (size_t)snprintf(y, cap, "%s%s%smachines:\n", HEAD, IMAGES, PROFILES);
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(y + o, cap - o,
				      "- {mac: 52:54:00:%02zx:%02zx:%02zx, profile: desk}\n",
				      (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
	config_diag_init(&d);
	t0 = now_ms();
	r = config_load_buffer("many.yaml", y, o, &cfg, &d);
	is_int(r, 0, "100k machines load");
	diag("100k machines (%zu bytes) loaded in %llu ms", o, (unsigned long long)(now_ms() - t0));
	mac[3] = 0x01;
	mac[4] = 0x86;
	mac[5] = 0x9f; /* 99999 */
	ok(cfg && config_machine_by_mac(cfg, mac, &mt) == 0 && mt.kind == CONFIG_MATCH_MACHINE &&
		   mt.machine == &cfg->machines[99999],
	   "the last of 100k found by MAC");
	config_free(cfg);
	o += (size_t)snprintf(y + o, cap - o, "- {mac: 52:54:01:00:00:00, profile: desk}\n");
	config_diag_release(&d);
	config_diag_init(&d);
	r = config_load_buffer("many.yaml", y, o, &cfg, &d);
	ok(r < 0 && has_msg(&d, "machines[100000]: too many entries (at most 100000)"),
	   "the 100001st machine is refused");
	config_diag_release(&d);
	free(y);
}

static void test_lookup(void)
{
	struct config *cfg = good(HEAD IMAGES PROFILES "  - name: lab\n    image: deb\n"
						       "  - name: other\n    image: deb\n"
						       "machines:\n"
						       "  - mac: 52:54:00:00:00:01\n"
						       "    profile: desk\n"
						       "groups:\n"
						       "  - match: 52-54-00-*\n"
						       "    profile: lab\n"
						       "  - match: \"52:54:*\"\n"
						       "    profile: other\n"
						       "unknown_machines:\n"
						       "  policy: profile\n"
						       "  profile: desk\n",
				  "lookup config loads");
	uint8_t m1[6] = {0x52, 0x54, 0, 0, 0, 1}, m2[6] = {0x52, 0x54, 0, 9, 9, 9},
		m3[6] = {0x52, 0x54, 1, 0, 0, 0}, m4[6] = {0xaa, 0, 0, 0, 0, 0};
	struct config_match mt;

	if (!cfg)
		return;
	is_str(cfg->groups[0].match, "52:54:00:*", "pattern normalised to colons");
	ok(config_machine_by_mac(cfg, m1, &mt) == 0 && mt.kind == CONFIG_MATCH_MACHINE &&
		   !strcmp(mt.profile->name, "desk"),
	   "explicit machine wins over groups");
	ok(config_machine_by_mac(cfg, m2, &mt) == 0 && mt.kind == CONFIG_MATCH_GROUP &&
		   mt.group == &cfg->groups[0] && !strcmp(mt.profile->name, "lab"),
	   "first matching group wins");
	ok(config_machine_by_mac(cfg, m3, &mt) == 0 && mt.group == &cfg->groups[1] &&
		   !strcmp(mt.profile->name, "other"),
	   "second group");
	ok(config_machine_by_mac(cfg, m4, &mt) == 0 && mt.kind == CONFIG_MATCH_UNKNOWN &&
		   !strcmp(mt.profile->name, "desk") && !mt.machine,
	   "unknown machine gets the policy's profile");
	cfg->unknown.policy = CONFIG_UNKNOWN_REFUSE;
	ok(config_machine_by_mac(cfg, m4, &mt) == -ENOENT && mt.kind == CONFIG_MATCH_REFUSED &&
		   !mt.profile,
	   "refused when the policy says so");
	ok(config_profile_by_name(cfg, "nope") == NULL, "unknown profile name");
	ok(config_image_by_name(cfg, "deb") == &cfg->images[0], "image by name");
	config_free(cfg);
}

static struct config *load_print_reload(struct config *cfg)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	struct config_diag d;
	struct config *again = NULL;

	is_int(config_print(cfg, f), 0, "config_print succeeds");
	fclose(f);
	config_diag_init(&d);
	if (!ok(config_load_buffer("printed.yaml", out, len, &again, &d) == 0,
		"printed config loads again"))
		config_diag_print(&d, stdout);
	config_diag_release(&d);
	free(out);
	return again;
}

static void test_print_and_diff(void)
{
	const char *base =
		HEAD IMAGES PROFILES "  - name: \"null\"\n    image: deb\n    mode: stream\n"
				     "machines:\n"
				     "  - mac: 52:54:00:00:00:01\n"
				     "    profile: desk\n"
				     "    chap_secret_file: /etc/s/1\n"
				     "  - mac: 52:54:00:00:00:02\n"
				     "    profile: \"null\"\n"
				     "groups:\n"
				     "  - match: \"*\"\n"
				     "    profile: desk\n";
	struct config *a = good(base, "diff base loads"), *b, *c;
	struct config_diff df;
	char *y;

	if (!a)
		return;
	b = load_print_reload(a);
	if (b) {
		config_diff(a, b, &df);
		ok(config_diff_empty(&df),
		   "print -> load round trip is equal (even a profile named null)");
		config_diff_release(&df);
		config_free(b);
	}

	/* change the image: the profiles using it and their machines change */
	y = xstrdup(base);
	strstr(y, "kernel: /k")[9] = 'K';
	c = good(y, "changed image loads");
	free(y);
	if (c) {
		config_diff(a, c, &df);
		ok(df.images.n_changed == 1 && !strcmp(df.images.changed[0], "deb"),
		   "image changed");
		is_int(df.profiles.n_changed, 2, "both profiles of that image changed");
		is_int(df.machines.n_changed, 2, "both machines changed through their profile");
		ok(df.groups && !df.unknown && !df.appliance, "groups changed, nothing else");
		config_diff_release(&df);
		config_free(c);
	}

	/* add, remove, appliance bits */
	c = good("appliance:\n  interface: gcbr1\n  listen: 10.77.0.1/24\n  dhcp:\n"
		 "    range: 10.77.0.100-10.77.0.150\n  admin_token_file: /t\n" IMAGES PROFILES
		 "machines:\n  - mac: 52:54:00:00:00:03\n    profile: desk\n"
		 "  - mac: 52:54:00:00:00:01\n    profile: desk\n    chap_secret_file: /etc/s/1\n",
		 "second config loads");
	if (c) {
		config_diff(a, c, &df);
		ok(df.machines.n_added == 1 && !strcmp(df.machines.added[0], "52:54:00:00:00:03"),
		   "machine added");
		ok(df.machines.n_removed == 1 &&
			   !strcmp(df.machines.removed[0], "52:54:00:00:00:02"),
		   "machine removed");
		is_int(df.machines.n_changed, 0, "unchanged machine not listed");
		ok(df.profiles.n_removed == 1 && !strcmp(df.profiles.removed[0], "null"),
		   "profile removed");
		is_int(df.appliance,
		       CONFIG_CHANGED_NETWORK | CONFIG_CHANGED_DHCP | CONFIG_CHANGED_TOKEN,
		       "appliance change bits");
		config_diff_release(&df);
		config_free(c);
	}
	config_free(a);
}

static void write_file(const char *path, const char *data, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	if (fd < 0 || io_write_all(fd, data, strlen(data)) < 0 || close(fd) < 0)
		exit(2);
}

static void test_host(void)
{
	char *dir = tap_tmpdir(), p1[4200], p2[4200], p3[4200], p4[4200];
	char *y, *s = NULL;
	struct config *cfg;
	struct config_diag d;

	snprintf(p1, sizeof(p1), "%s/good", dir);
	snprintf(p2, sizeof(p2), "%s/short", dir);
	snprintf(p3, sizeof(p3), "%s/missing", dir);
	write_file(p1, "s3cret-s3cret-XYZ\n", 0600);
	write_file(p2, "short\n", 0600);
	snprintf(p4, sizeof(p4), "%s/comma", dir);
	write_file(p4, "secret,with,commas\n", 0600);
	is_int(config_secret_read(p4, &s), 0, "a comma is fine in a token");
	free(s);
	unlink(p4);
	is_int(config_secret_read(p1, &s), 0, "good secret reads");
	is_str(s, "s3cret-s3cret-XYZ", "trailing newline dropped");
	free(s);
	is_int(config_secret_read(p2, &s), -EINVAL, "short secret refused");
	is_int(config_secret_read(dir, &s), -EISDIR, "directory refused");

	y = xasprintf("appliance:\n  interface: lo\n  listen: 127.0.0.1\n  dhcp: {mode: off}\n"
		      "  admin_token_file: %s\n" IMAGES PROFILES "machines:\n"
		      "  - mac: 52:54:00:00:00:01\n    profile: desk\n    chap_secret_file: %s\n"
		      "  - mac: 52:54:00:00:00:02\n    profile: desk\n    chap_secret_file: %s\n"
		      "  - mac: 52:54:00:00:00:03\n    profile: desk\n    chap_secret_file: %s\n",
		      p1, p2, dir, p3);
	cfg = good(y, "host-check config loads (files are not opened by the load)");
	free(y);
	config_diag_init(&d);
	if (cfg) {
		is_int(config_check_interface(cfg, &d), 0, "127.0.0.1 is on lo");
		is_int(config_check_files(cfg, &d), -EINVAL, "bad secret files found");
		is_int(d.total, 3, "three bad secret files");
		ok(has_msg(&d, "machines[0].chap_secret_file: \"") &&
			   has_msg(&d, "/short\" does not hold a valid CHAP secret (expected one "
				       "line of "
				       "12-64 printable characters without spaces or commas)"),
		   "short secret reported");
		ok(has_msg(&d, "machines[1].chap_secret_file: \"") &&
			   has_msg(&d, "\" is a directory"),
		   "directory reported");
		ok(has_msg(&d, "/missing\": No such file or directory"), "missing file reported");
		ok(!has_msg(&d, "s3cret"), "no secret in any message");
		config_diag_release(&d);
		config_diag_init(&d);
		cfg->appliance.listen_addr.s_addr = htonl(0x0a636363);
		is_int(config_check_interface(cfg, &d), -EINVAL, "10.99.99.99 is not on lo");
		ok(has_msg(&d, "t.yaml:3:11: appliance.listen: 127.0.0.1 is not an address of "
			       "interface \"lo\" (it has 127.0.0.1"),
		   "message names the interface's addresses");
		config_diag_release(&d);
		config_diag_init(&d);
		free(cfg->appliance.interface);
		cfg->appliance.interface = xstrdup("gcnope0");
		is_int(config_check_interface(cfg, &d), -EINVAL, "missing interface");
		ok(has_msg(&d, "appliance.interface: no interface \"gcnope0\" on this host"),
		   "missing interface reported");
	}
	config_diag_release(&d);
	config_free(cfg);
	tap_rmtree(dir);
}

int main(void)
{
	test_values();
	test_example();
	test_defaults();
	test_syntax_errors();
	test_schema_errors();
	test_semantic_errors();
	test_collects();
	test_limits();
	test_many_machines();
	test_lookup();
	test_print_and_diff();
	test_host();
	return done_testing();
}
