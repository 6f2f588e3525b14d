/* goldcached's command line: parses argv, loads and checks the config, then
 * either reports (--check, --print-config) or hands over to daemon_run().
 * Exit codes (docs/config.md): 0 success, 1 invalid config or daemon
 * failure, 2 usage error. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/daemon.h"
#include "config/config.h"
#include "lib/log.h"

#define DEFAULT_CONFIG "/etc/goldcache/goldcached.yaml"

enum { EXIT_CONFIG = 1, EXIT_USAGE = 2 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: goldcached [-c FILE] [--check | --print-config] [--no-host-checks] [-v]\n"
		"                  [--foreground] [--state-dir DIR] [--log FILE]\n"
		"  -c, --config FILE   the YAML config (default " DEFAULT_CONFIG ")\n"
		"      --check         validate the config (and this host) and exit\n"
		"      --print-config  print the effective config, defaults filled in\n"
		"      --no-host-checks  skip the interface and secret-file checks\n"
		"      --foreground    run in the foreground (the default and only way;\n"
		"                      a service manager supervises goldcached)\n"
		"      --state-dir DIR use DIR instead of the config's appliance.state_dir\n"
		"      --log FILE      log to FILE (appended, reopened on SIGHUP), not stderr\n"
		"  -v, --verbose       log debug messages\n"
		"  -h, --help          this help\n"
		"exit codes: 0 ok, 1 invalid config or daemon failure, 2 usage error\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'C'},
		{"print-config", no_argument, NULL, 'P'},
		{"no-host-checks", no_argument, NULL, 'N'},
		{"verbose", no_argument, NULL, 'v'},
		{"foreground", no_argument, NULL, 'F'},
		{"state-dir", required_argument, NULL, 'S'},
		{"log", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = DEFAULT_CONFIG, *state_dir = NULL, *log_path = NULL;
	bool check = false, print = false, host = true;
	struct config_diag diag;
	struct config *cfg = NULL;
	int c, r;

	log_init("goldcached", LOG_INFO);
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'P':
			print = true;
			break;
		case 'N':
			host = false;
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		case 'F':
			break;
		case 'S':
			state_dir = optarg;
			break;
		case 'L':
			log_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || (check && print)) {
		fprintf(stderr, "goldcached: %s\n",
			optind < argc ? "unexpected argument"
				      : "--check and --print-config "
					"exclude each other");
		usage(stderr);
		return EXIT_USAGE;
	}

	config_diag_init(&diag);
	r = config_load_file(path, &cfg, &diag);
	if (r == 0 && host && !print)
		r = config_check_host(cfg, &diag);
	if (r < 0) {
		config_diag_print(&diag, stderr);
		fprintf(stderr, "%s: %zu error%s\n", path, diag.total, diag.total == 1 ? "" : "s");
		config_diag_release(&diag);
		config_free(cfg);
		return EXIT_CONFIG;
	}
	config_diag_release(&diag);

	if (check) {
		printf("%s: ok (%zu machines, %zu profiles, %zu images)\n", path, cfg->n_machines,
		       cfg->n_profiles, cfg->n_images);
		r = 0;
	} else if (print) {
		r = config_print(cfg, stdout);
		if (r < 0)
			fprintf(stderr, "goldcached: cannot write the config: %s\n", strerror(-r));
	} else {
		struct daemon_opts o = {
			.config_path = path, .state_dir = state_dir, .log_path = log_path};

		r = daemon_run(cfg, &o);
	}
	config_free(cfg);
	return r < 0 ? EXIT_CONFIG : 0;
}
