/* Fuzz harness for config/: arbitrary bytes go through config_load_buffer().
 * Besides memory safety it checks the loader's promises: every message names
 * the file; a config that loads prints (config_print) to YAML that loads again
 * to an equal config (config_diff empty); every listed machine is found by
 * its own MAC; a MAC taken from the input resolves without crashing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static void fail(const char *what, const char *text, size_t len)
{
	fprintf(stderr, "fuzz-config: %s\n%.*s\n", what, (int)len, text ? text : "");
	abort();
}

static void check_diag(const struct config_diag *d, const char *name)
{
	if (d->n > CONFIG_MAX_ERRORS || d->total < d->n)
		fail("diag counts inconsistent", NULL, 0);
	for (size_t i = 0; i < d->n; i++)
		if (strncmp(d->msgs[i], name, strlen(name)) != 0)
			fail("message does not start with the file name", d->msgs[i],
			     strlen(d->msgs[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_diag d, d2;
	struct config *cfg = NULL, *again = NULL;
	struct config_diff df;
	struct config_match mt;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	config_diag_init(&d);
	if (config_load_buffer("fuzz.yaml", data, size, &cfg, &d) != 0) {
		if (cfg || d.total == 0)
			fail("failed load without a message or with a config", NULL, 0);
		check_diag(&d, "fuzz.yaml");
		config_diag_release(&d);
		return 0;
	}
	check_diag(&d, "fuzz.yaml");
	if (d.total)
		fail("successful load with errors", NULL, 0);

	f = open_memstream(&out, &len);
	if (!f || config_print(cfg, f) != 0 || fclose(f) != 0)
		fail("config_print failed", NULL, 0);
	config_diag_init(&d2);
	if (config_load_buffer("printed.yaml", out, len, &again, &d2) != 0) {
		for (size_t i = 0; i < d2.n; i++)
			fprintf(stderr, "%s\n", d2.msgs[i]);
		fail("printed config does not load", out, len);
	}
	config_diff(cfg, again, &df);
	if (!config_diff_empty(&df))
		fail("printed config differs from the original", out, len);
	config_diff_release(&df);

	for (size_t i = 0; i < cfg->n_machines; i++)
		if (config_machine_by_mac(cfg, cfg->machines[i].mac, &mt) != 0 ||
		    mt.machine != &cfg->machines[i])
			fail("machine not found by its MAC", cfg->machines[i].mac_str,
			     strlen(cfg->machines[i].mac_str));
	if (size >= 6)
		config_machine_by_mac(cfg, data + size - 6, &mt);

	free(out);
	config_free(again);
	config_free(cfg);
	config_diag_release(&d2);
	config_diag_release(&d);
	return 0;
}
