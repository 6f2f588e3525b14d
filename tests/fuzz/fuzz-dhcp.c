/* Fuzz harness for appliance/dhcp's checks: whatever the config values (the
 * input, split at '\n' into interface, listen, mode, range start, range end,
 * tftp root, http base, state dir, proxy subnet, user, then MAC/name pairs),
 * either rendering is refused or every line written is one dnsmasq line we
 * meant to write: no injected line, option or control byte. aborts otherwise. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/dhcp.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NFIELDS 10
#define NHOSTS 4

static const char *const allowed[] = {
	"port=",	 "interface=",	    "bind-interfaces", "user=",	       "log-dhcp",
	"log-facility=", "dhcp-leasefile=", "dhcp-hostsdir=",  "dhcp-ignore=", "dhcp-authoritative",
	"no-ping",	 "dhcp-range=",	    "enable-ra",       "pxe-service=", "enable-tftp",
	"tftp-root=",	 "dhcp-match=",	    "dhcp-userclass=", "dhcp-boot=",   "dhcp-option=",
};

static void check_text(const char *s, size_t *n_boot)
{
	const char *line = s;

	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line), i, ok = 0;

		for (i = 0; i < len; i++)
			if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f)
				abort();
		if (len && line[0] != '#') {
			for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
				if (strncmp(line, allowed[i], strlen(allowed[i])) == 0)
					ok = 1;
			if (!ok)
				abort();
			if (strncmp(line, "dhcp-boot=", 10) == 0)
				(*n_boot)++;
		}
		if (!end)
			break;
		line = end + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const defaults[NFIELDS] = {
		"gcbr0",
		"10.77.0.1",
		"full",
		"10.77.0.100",
		"10.77.0.199",
		"/srv/tftp",
		"http://10.77.0.1:8080",
		"/var/lib/gc",
		"10.77.0.0",
		NULL,
	};
	const char *f[NFIELDS + 2 * NHOSTS] = {0};
	struct dhcp_host hosts[NHOSTS];
	struct dhcp_config c = {0};
	char *buf, *p, *conf = NULL;
	size_t nf = 0, i, n_boot = 0;

	static int quiet;

	if (!quiet) { /* refusals log by design; keep the fuzzer's output readable */
		log_set_fd(open("/dev/null", O_WRONLY | O_CLOEXEC));
		quiet = 1;
	}
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (p = buf; nf < NFIELDS + 2 * NHOSTS; nf++) {
		char *nl = strchr(p, '\n');

		f[nf] = p;
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	for (i = 0; i < NFIELDS; i++)
		if (!f[i] || !*f[i])
			f[i] = defaults[i];
	c.interface = f[0];
	c.listen_addr = f[1];
	if (dhcp_mode_parse(f[2], &c.mode) < 0)
		c.mode = (enum dhcp_mode)(f[2][0] & 3);
	c.range_start = f[3];
	c.range_end = f[4];
	c.tftp_root = f[5];
	c.http_base = f[6];
	c.state_dir = f[7];
	c.proxy_subnet = f[8];
	c.user = f[9];
	c.lease_secs = (unsigned)size * 7;
	c.ipv6_ra = size & 1;
	c.known_only = (size >> 1) & 1;
	for (i = 0; i < NHOSTS && f[NFIELDS + 2 * i]; i++) {
		hosts[i].mac = f[NFIELDS + 2 * i];
		hosts[i].name = f[NFIELDS + 2 * i + 1];
	}
	c.hosts = hosts;
	c.n_hosts = i;

	if (dhcp_render_conf(&c, &conf) == 0) {
		check_text(conf, &n_boot);
		if (n_boot != (c.mode == DHCP_MODE_FULL ? 3u : 1u))
			abort();
		for (i = 0; i < c.n_hosts; i++) {
			char fname[18], *h = NULL;
			size_t k, len;

			if (dhcp_render_host(&hosts[i], fname, &h) != 0)
				abort(); /* the config check passed: each host must render */
			len = strlen(h);
			/* "aa:bb:cc:dd:ee:ff" [ "," label ] "\n" and nothing else */
			if (len < 18 || h[17] != (len == 18 ? '\n' : ',') || h[len - 1] != '\n')
				abort();
			for (k = 18; k + 1 < len; k++)
				if (!((h[k] >= 'a' && h[k] <= 'z') ||
				      (h[k] >= 'A' && h[k] <= 'Z') ||
				      (h[k] >= '0' && h[k] <= '9') || h[k] == '-'))
					abort();
			if (strchr(fname, '/') || fname[0] == '.')
				abort();
			free(h);
		}
	}
	free(conf);
	free(buf);
	return 0;
}
