/* Private glue between config/parse.c, config/validate.c and config/config.c. */
#ifndef GC_CONFIG_INTERNAL_H
#define GC_CONFIG_INTERNAL_H

#include "config/config.h"

/* Semantic pass over a freshly parsed config: fills defaults, interprets
 * values that depend on others (dhcp.range needs dhcp.mode, iscsi.portal
 * defaults from listen), resolves references, finds duplicates and builds the
 * MAC index. Adds errors to diag; returns 0 or -EINVAL. */
int config_validate(struct config *cfg, struct config_diag *diag);

/* Writes s (n bytes) quoted for a message: "..." with non-printable bytes as
 * \xNN, cut after 48 characters with "...". Returns buf. */
const char *config_quote(const char *s, size_t n, char *buf, size_t size);
#define CONFIG_QUOTE_BUF 256

/* Parses "A.B.C.D" or "A.B.C.D/N" (N 1..32; *prefix 0 when absent). */
int config_ipv4_parse(const char *s, struct in_addr *addr, unsigned *prefix);

#endif
