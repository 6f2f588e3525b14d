/* Argument helpers for the agent's command-line tools (see tool.h). Secrets
 * come from a file or the environment, never from argv, where any local user
 * could read them in /proc. */
#include "agent/tool.h"

#include <stdlib.h>
#include <string.h>

#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"

char *tool_read_secret(const char *path)
{
	char *s = NULL;
	size_t n = 0;
	int r = io_read_file(path, 256, &s, &n);

	if (r < 0)
		die(2, "cannot read secret file '%s': %s", path, strerror(-r));
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

void tool_target_args(struct fetch_target *t, char *const pos[3], char **secret)
{
	int lun;

	t->portal = pos[0];
	t->iqn = pos[1];
	if (parse_int(pos[2], 0, 255, &lun) < 0)
		die(2, "'%s' is not a LUN number", pos[2]);
	t->lun = lun;
	if (t->user && !*secret) {
		const char *env = getenv("GOLDCACHE_CHAP_SECRET");

		if (!env)
			die(2, "-u needs --secret-file or GOLDCACHE_CHAP_SECRET");
		*secret = xstrdup(env);
	}
	t->secret = *secret;
}
