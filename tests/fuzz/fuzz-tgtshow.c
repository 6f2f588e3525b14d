/* Fuzz harness for targets/tgtshow: tgtadm's show output is untrusted input.
 * The first byte picks the parser (mod 3: target list, portal list, account
 * list); a successful parse is walked so every parsed string is read. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "targets/tgtshow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data + (size ? 1 : 0);
	size_t len = size ? size - 1 : 0;
	volatile size_t sink = 0;

	if (size && data[0] % 3 != 0) {
		char **list;
		size_t n;
		int r = data[0] % 3 == 1 ? tgtshow_parse_portals(buf, len, &list, &n)
					 : tgtshow_parse_accounts(buf, len, &list, &n);

		if (r == 0) {
			for (size_t i = 0; i < n; i++)
				sink += strlen(list[i]);
			tgtshow_free_list(list, n);
		}
	} else {
		struct tgt_state st;

		if (tgtshow_parse(buf, len, &st, NULL) == 0) {
			for (size_t i = 0; i < st.n; i++) {
				const struct tgt_target *t = &st.targets[i];

				sink += strlen(t->iqn) + (t->state ? strlen(t->state) : 0);
				sink += tgt_state_find_iqn(&st, t->iqn) == t;
				for (size_t l = 0; l < t->n_luns; l++) {
					sink += t->luns[l].path ? strlen(t->luns[l].path) : 0;
					sink += tgt_target_find_lun(t, t->luns[l].lun) != NULL;
				}
				for (size_t a = 0; a < t->n_acls; a++)
					sink += (size_t)tgtshow_acl_is_name(t->acls[a]);
				for (size_t a = 0; a < t->n_accounts; a++)
					sink += strlen(t->accounts[a]);
			}
			tgt_state_release(&st);
		}
	}
	(void)sink;
	return 0;
}
