/* The goldcache iSCSI naming scheme and the validation of names and CHAP
 * credentials before they reach tgtadm's argv.
 *
 *   appliance prefix   iqn.YYYY-MM.reversed.domain[.more]      (config: iqn_prefix)
 *   machine target     PREFIX:m.NAME     served by the appliance's tgtd
 *   machine initiator  PREFIX:i.NAME     used by goldagent and iPXE for NAME
 *   CHAP user          NAME              (incoming CHAP, one account per machine)
 *
 * NAME is a machine name (name_is_valid: [A-Za-z0-9._-], 1-64 chars); iSCSI
 * names are case-insensitive and tgt compares them byte for byte, so names are
 * lower-cased in IQNs. docs/targets.md describes the scheme. */
#ifndef GC_TARGETS_IQN_H
#define GC_TARGETS_IQN_H

#include <stddef.h>

#define IQN_MAX 223 /* RFC 3720: an iSCSI name is at most 223 bytes */
#define CHAP_SECRET_MIN 12 /* RFC 3720 8.2.1 and Windows/iPXE interoperability */
#define CHAP_SECRET_MAX 255 /* as config_secret_read; tgt and libiscsi take 255 */
#define CHAP_USER_MAX 64

/* Is s a valid iqn-type iSCSI name ("iqn.2026-11.org.example:any.thing")?
 * Lower-case letters, digits, '.', '-', ':'; the date and a domain are required. */
int iqn_is_valid(const char *s);
/* Is s a valid appliance prefix: a valid IQN without ':' (the scheme adds it). */
int iqn_prefix_is_valid(const char *s);

/* Writes PREFIX:m.name / PREFIX:i.name into buf (size >= IQN_MAX + 1).
 * Returns 0, -EINVAL (bad prefix or name) or -ENAMETOOLONG. */
int iqn_machine_target(const char *prefix, const char *name, char *buf, size_t size);
int iqn_machine_initiator(const char *prefix, const char *name, char *buf, size_t size);

/* CHAP user: 1-64 chars of [A-Za-z0-9._@:-] (tgtd splits its request at the
 * first ',' after "user="). CHAP secret: 12-255 printable ASCII characters
 * without spaces (tgtd takes the rest of the request as the password, commas
 * included). Return 1 when valid. */
int chap_user_is_valid(const char *s);
int chap_secret_is_valid(const char *s);

#endif
