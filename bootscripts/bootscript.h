/* Per-machine iPXE scripts: picks the template for a boot mode (built into the
 * binary from the .ipxe files in bootscripts/) and renders it with the machine's values.
 * Pure: no config, registry or network here; appliance/api.c decides the values. */
#ifndef GC_BOOTSCRIPTS_BOOTSCRIPT_H
#define GC_BOOTSCRIPTS_BOOTSCRIPT_H

#include <stddef.h>

enum boot_mode { BOOT_CACHE, BOOT_STREAM, BOOT_SANBOOT, BOOT_REFUSE, BOOT_MODE_N };

/* "cache", "stream", "sanboot", "refuse". */
const char *boot_mode_name(enum boot_mode m);
/* 0 or -EINVAL. */
int boot_mode_parse(const char *s, enum boot_mode *out);

/* The built-in template for mode m (not NUL-terminated; *len its size). */
const char *bootscript_template(enum boot_mode m, size_t *len);

/* Values a script may use; a template naming a NULL one fails with -ENOENT.
 *   cache, stream: mac machine image version base_url kernel_url initrd_url
 *                  cmdline (extra kernel arguments, space-separated safe tokens)
 *   sanboot:       mac machine image version initiator_iqn target_iqn
 *                  portal_addr portal_port chap_user chap_secret
 *   refuse:        mac */
struct bootscript_params {
	enum boot_mode mode;
	const char *mac, *machine, *image, *version;
	const char *base_url, *kernel_url, *initrd_url;
	const char *initiator_iqn, *target_iqn, *portal_addr, *portal_port;
	const char *chap_user, *chap_secret;
	const char *cmdline; /* extra kernel arguments (words); NULL: none */
};

/* Renders the script for p->mode into *out (heap, NUL-terminated, caller frees).
 * 0 or a negative errno from render_template(); the failing variable is logged. */
int bootscript_render(const struct bootscript_params *p, char **out, size_t *len);

#endif
