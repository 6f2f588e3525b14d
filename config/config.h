/* goldcached's configuration: one YAML file mapped onto plain C structs.
 *
 * Loading = YAML parsing (config/parse.c: libyaml events, schema-driven,
 * bounded) + semantic validation (config/validate.c: cross references,
 * duplicates, subnets). Host checks (the listen address is on the interface,
 * secret files are readable) are separate, so unit tests can skip them and
 * `goldcached --check` runs them.
 *
 * Ownership: config_load_*() returns a heap struct config that owns every
 * string and array in it; config_free() releases it all. Pointers between
 * items (profile->image_ref, machine->profile_ref, ...) point into the same
 * struct config's arrays and stay valid until config_free(). Nothing in a
 * loaded config is ever NULL unless documented as optional.
 *
 * Errors: every message is "FILE:LINE:COLUMN: KEY.PATH: what, expected what"
 * (LINE and COLUMN 1-based). Loading collects up to CONFIG_MAX_ERRORS
 * messages in a struct config_diag instead of stopping at the first.
 *
 * docs/config.md is the operator's reference for every key. */
#ifndef GC_CONFIG_CONFIG_H
#define GC_CONFIG_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Limits (untrusted input is bounded). */
#define CONFIG_MAX_FILE_SIZE (16u << 20) /* bytes of YAML */
#define CONFIG_MAX_DEPTH 16 /* nesting of mappings/sequences */
#define CONFIG_MAX_STRING 4096 /* bytes in one scalar */
#define CONFIG_MAX_MACHINES 100000
#define CONFIG_MAX_GROUPS 10000
#define CONFIG_MAX_PROFILES 10000
/* A cache-mode machine volume (its upload LUN) when the profile gives none. */
#define CONFIG_DEFAULT_VOLUME_SIZE (8ull << 30)
#define CONFIG_MAX_IMAGES 10000
#define CONFIG_MAX_ERRORS 20 /* messages kept; more are counted */
#define CONFIG_IQN_PREFIX_MAX 156 /* + ":m." + a 64-char name fits 223 */

/* "52:54:00:12:34:56" + NUL */
#define CONFIG_MAC_STRLEN 18

/* Where a value was in the file (1-based; 0 when not from a file). */
struct config_pos {
	unsigned line, col;
};

enum config_dhcp_mode {
	CONFIG_DHCP_FULL, /* dnsmasq hands out leases from range */
	CONFIG_DHCP_PROXY, /* proxy-DHCP beside the site's DHCP server */
	CONFIG_DHCP_OFF, /* no DHCP at all (another server points at us) */
};

enum config_boot_mode {
	CONFIG_MODE_CACHE, /* gold streamed + cached on local disk, offline capable */
	CONFIG_MODE_STREAM, /* diskless: gold over iSCSI, upper layer in RAM */
	CONFIG_MODE_SANBOOT, /* iPXE sanboot of a whole-disk image */
};

enum config_unknown_policy {
	CONFIG_UNKNOWN_REFUSE, /* unknown MACs get a "not registered" script */
	CONFIG_UNKNOWN_PROFILE, /* unknown MACs boot unknown.profile */
};

struct config_dhcp {
	enum config_dhcp_mode mode;
	char *range; /* as written (normalised); NULL when mode is off */
	/* full: first and last address handed out. proxy: start is the subnet's
	 * network address and end equals start. Network byte order. */
	struct in_addr range_start, range_end;
	uint64_t lease_time_s;
	struct config_pos pos, range_pos;
};

struct config_iscsi {
	char *portal; /* "ADDR:PORT" as given, default "<listen>:3260" */
	struct in_addr portal_addr;
	uint16_t portal_port;
	char *iqn_prefix; /* validated: iqn.YYYY-MM.reversed.domain (targets/iqn.h) */
	struct config_pos portal_pos, iqn_pos;
};

struct config_appliance {
	char *interface; /* boot network interface, e.g. a bridge */
	char *listen; /* "10.77.0.1" (without the prefix length) */
	struct in_addr listen_addr;
	unsigned listen_prefix; /* 1..32 when written as ADDR/N, else 0 */
	uint16_t http_port;
	struct config_dhcp dhcp;
	char *tftp_root; /* absolute path */
	struct config_iscsi iscsi;
	char *store_dir; /* absolute path */
	char *state_dir; /* absolute path */
	char *admin_token_file; /* optional (NULL: the daemon generates one in state_dir) */
	struct config_pos interface_pos, listen_pos, admin_token_pos;
};

struct config_image {
	char *name; /* name_is_valid() */
	char *version; /* "current" or a pinned version number, canonical */
	uint32_t version_id; /* 0: current, else the pinned version (store's numbering) */
	char *kernel; /* optional absolute path (needed by cache/stream profiles) */
	char *initrd; /* optional absolute path (needed by cache/stream profiles) */
	char *cmdline; /* optional extra kernel arguments, no control characters */
	struct config_pos pos, version_pos;
};

struct config_profile {
	char *name;
	char *image; /* image name as written */
	const struct config_image *image_ref; /* resolved (NULL only while invalid) */
	enum config_boot_mode mode;
	uint64_t sync_interval_s;
	unsigned retention; /* snapshots kept, >= 1 */
	uint64_t volume_size; /* bytes of each machine's volume (cache mode), whole MiB */
	bool persist; /* false: fresh machine volume at every boot */
	struct config_pos pos, image_pos;
};

struct config_machine {
	uint8_t mac[6];
	char mac_str[CONFIG_MAC_STRLEN]; /* lower-case colon form */
	char *name; /* default: MAC in hyphen form, "52-54-00-12-34-56" */
	char *profile;
	const struct config_profile *profile_ref;
	char *chap_secret_file; /* optional (NULL: the daemon generates one in state_dir) */
	struct config_pos pos, mac_pos, profile_pos, secret_pos;
};

struct config_group {
	char *match; /* fnmatch(3) pattern over the lower-case colon MAC form */
	char *profile;
	const struct config_profile *profile_ref;
	struct config_pos pos, profile_pos;
};

struct config_unknown {
	enum config_unknown_policy policy;
	char *profile; /* set iff policy is CONFIG_UNKNOWN_PROFILE */
	const struct config_profile *profile_ref;
	struct config_pos pos, profile_pos;
};

struct config {
	char *path; /* the name errors are reported under */
	struct config_appliance appliance;
	struct config_image *images;
	size_t n_images;
	struct config_profile *profiles;
	size_t n_profiles;
	struct config_machine *machines;
	size_t n_machines;
	struct config_group *groups;
	size_t n_groups;
	struct config_unknown unknown;
	/* private: machines indices sorted by MAC, for config_machine_by_mac() */
	size_t *by_mac_;
};

/* Collected error messages. */
struct config_diag {
	char *msgs[CONFIG_MAX_ERRORS];
	size_t n; /* messages kept */
	size_t total; /* errors seen (>= n) */
};

void config_diag_init(struct config_diag *d);
void config_diag_release(struct config_diag *d);
/* Adds "FILE:LINE:COL: PATH: message" (pos may be NULL or zero: no line:col;
 * path may be NULL or "": no key path). */
void config_diag_add(struct config_diag *d, const char *file, const struct config_pos *pos,
		     const char *path, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Prints every message, one a line, plus "... and N more errors" if dropped. */
void config_diag_print(const struct config_diag *d, FILE *f);

/* Loads and validates (syntax + semantics, no host probes) a config.
 * On success returns 0 and *out (free with config_free()). On failure returns
 * -EINVAL (config errors, in *diag), or -errno when the file cannot be read
 * (also described in *diag); *out is NULL. diag must be initialised. */
int config_load_file(const char *path, struct config **out, struct config_diag *diag);
/* Same from memory; name is the file name used in messages. buf need not be
 * NUL-terminated. */
int config_load_buffer(const char *name, const void *buf, size_t len, struct config **out,
		       struct config_diag *diag);
void config_free(struct config *cfg);

/* Host checks, run by `goldcached --check` and at daemon start/reload.
 * Each adds its errors to diag and returns 0 or -EINVAL. */
/* listen is an IPv4 address of interface (getifaddrs), and the DHCP range lies
 * in that address's subnet. */
int config_check_interface(const struct config *cfg, struct config_diag *diag);
/* admin_token_file and every chap_secret_file are readable regular files
 * holding a valid secret (config_secret_read()). */
int config_check_files(const struct config *cfg, struct config_diag *diag);
/* Both of the above. */
int config_check_host(const struct config *cfg, struct config_diag *diag);

/* Reads a secret file (a CHAP secret or a token): at most 255 bytes of
 * printable ASCII without spaces, one trailing newline allowed. *out is a
 * heap string (caller frees, after wiping it). 0, -EINVAL (bad content),
 * -EFBIG or -errno. */
int config_secret_read(const char *path, char **out);

/* MACs: accepts six hex pairs separated by ':' or '-' in any case. */
int config_mac_parse(const char *s, uint8_t mac[6]);
/* Writes the lower-case colon form into buf (CONFIG_MAC_STRLEN bytes). */
void config_mac_format(const uint8_t mac[6], char buf[CONFIG_MAC_STRLEN]);
/* "30s", "15m", "1h", "1d" (one number, one unit). 0 or -EINVAL/-ERANGE. */
int config_duration_parse(const char *s, uint64_t *secs);
/* Shortest exact form of secs ("90s", "15m", "1h", "2d"); returns buf. */
const char *config_duration_format(uint64_t secs, char *buf, size_t size);

const char *config_mode_name(enum config_boot_mode m);
const char *config_dhcp_mode_name(enum config_dhcp_mode m);
const char *config_unknown_policy_name(enum config_unknown_policy p);

/* Lookups. */
const struct config_profile *config_profile_by_name(const struct config *cfg, const char *name);
const struct config_image *config_image_by_name(const struct config *cfg, const char *name);
const struct config_machine *config_machine_by_name(const struct config *cfg, const char *name);

enum config_match_kind {
	CONFIG_MATCH_MACHINE, /* listed under machines: (a known machine) */
	CONFIG_MATCH_GROUP, /* matched a groups: pattern */
	CONFIG_MATCH_UNKNOWN, /* unknown_machines policy: profile */
	CONFIG_MATCH_REFUSED, /* unknown_machines policy: refuse */
};

struct config_match {
	enum config_match_kind kind;
	const struct config_profile *profile; /* NULL iff REFUSED */
	const struct config_machine *machine; /* set iff kind == MACHINE */
	const struct config_group *group; /* set iff kind == GROUP */
};

/* Resolves a MAC: explicit machines first (O(log n)), then groups in file
 * order, then the unknown_machines policy. Returns 0 with a profile, or
 * -ENOENT when refused (out->kind == CONFIG_MATCH_REFUSED). */
int config_machine_by_mac(const struct config *cfg, const uint8_t mac[6], struct config_match *out);

/* Equality of items (for reload). Profiles compare deeply: a profile whose
 * image changed is not equal. Machines compare deeply through their profile. */
bool config_image_equal(const struct config_image *a, const struct config_image *b);
bool config_profile_equal(const struct config_profile *a, const struct config_profile *b);
bool config_machine_equal(const struct config_machine *a, const struct config_machine *b);

/* What changed between two configs, section by section (SIGHUP reload). */
enum {
	CONFIG_CHANGED_NETWORK = 1 << 0, /* interface, listen, http_port */
	CONFIG_CHANGED_DHCP = 1 << 1, /* dhcp.* */
	CONFIG_CHANGED_TFTP = 1 << 2, /* tftp_root */
	CONFIG_CHANGED_ISCSI = 1 << 3, /* iscsi.portal, iscsi.iqn_prefix */
	CONFIG_CHANGED_DIRS = 1 << 4, /* store_dir, state_dir */
	CONFIG_CHANGED_TOKEN = 1 << 5, /* admin_token_file */
};

/* Names (images, profiles) or lower-case MACs (machines); the strings point
 * into the old config (removed) or the new one (added, changed). */
struct config_diff_list {
	const char **added, **removed, **changed;
	size_t n_added, n_removed, n_changed;
};

struct config_diff {
	unsigned appliance; /* CONFIG_CHANGED_* bits */
	struct config_diff_list images, profiles, machines;
	bool groups; /* the groups list differs (order matters) */
	bool unknown; /* the unknown_machines policy differs */
};

/* Fills *d (release with config_diff_release(); valid while both configs
 * live). A machine is "changed" when its name, secret file or profile
 * (deeply, including the profile's image) changed. */
void config_diff(const struct config *old, const struct config *new, struct config_diff *d);
void config_diff_release(struct config_diff *d);
/* True when nothing at all differs. */
bool config_diff_empty(const struct config_diff *d);

/* Writes the effective config (defaults filled in) as YAML that
 * config_load_*() reads back to an equal config. Secrets are never read or
 * printed (only the paths of secret files). 0 or -EIO. */
int config_print(const struct config *cfg, FILE *f);

#endif
