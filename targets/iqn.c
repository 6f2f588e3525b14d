/* goldcache iSCSI names and CHAP credential checks (see iqn.h).
 *
 * Everything that ends up in tgtadm's argv passes through here first: tgtadm
 * joins some values into a comma-separated request and tgtd prints them back
 * one per line, so commas, spaces and control characters are refused; the
 * show parser could not read them back unambiguously. */
#include "targets/iqn.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "lib/util.h"

static int iqn_chars_ok(const char *s, int allow_colon)
{
	for (const char *p = s; *p; p++) {
		if (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' ||
		    *p == '-')
			continue;
		if (*p == ':' && allow_colon)
			continue;
		return 0;
	}
	return 1;
}

static int iqn_check(const char *s, int allow_colon)
{
	size_t n = s ? strlen(s) : 0;

	/* "iqn." + "YYYY-MM" + "." + at least one domain character */
	if (n < 13 || n > IQN_MAX || strncmp(s, "iqn.", 4) != 0)
		return 0;
	for (int i = 4; i < 11; i++) {
		if (i == 8 ? s[i] != '-' : !isdigit((unsigned char)s[i]))
			return 0;
	}
	if (s[11] != '.' || s[12] == '.' || s[12] == ':' || s[12] == '-')
		return 0;
	if (s[n - 1] == '.' || s[n - 1] == ':' || strstr(s, ".."))
		return 0;
	return iqn_chars_ok(s, allow_colon);
}

int iqn_is_valid(const char *s)
{
	return iqn_check(s, 1);
}

int iqn_prefix_is_valid(const char *s)
{
	return iqn_check(s, 0);
}

static int machine_name(const char *prefix, const char *kind, const char *name, char *buf,
			size_t size)
{
	size_t n;
	int r;

	if (!iqn_prefix_is_valid(prefix) || !name_is_valid(name))
		return -EINVAL;
	r = fmt_buf(buf, size, "%s:%s.%s", prefix, kind, name);
	if (r < 0)
		return r;
	n = strlen(buf);
	if (n > IQN_MAX)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)tolower((unsigned char)buf[i]);
	/* '_' is legal in machine names but not in IQNs */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '_')
			buf[i] = '-';
	return iqn_is_valid(buf) ? 0 : -EINVAL;
}

int iqn_machine_target(const char *prefix, const char *name, char *buf, size_t size)
{
	return machine_name(prefix, "m", name, buf, size);
}

int iqn_machine_initiator(const char *prefix, const char *name, char *buf, size_t size)
{
	return machine_name(prefix, "i", name, buf, size);
}

int chap_user_is_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > CHAP_USER_MAX)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._@:-", *p))
			return 0;
	return 1;
}

int chap_secret_is_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < CHAP_SECRET_MIN || n > CHAP_SECRET_MAX)
		return 0;
	for (const char *p = s; *p; p++)
		if (*p <= ' ' || *p > '~')
			return 0;
	return 1;
}
