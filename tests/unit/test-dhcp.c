/* Unit tests for appliance/dhcp: MAC and name checks, the rendered dnsmasq
 * config per mode, hostile input rejected before anything is written, the
 * hosts dir and its change bits, argv, and the boot file installer. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliance/dhcp.h"
#include "lib/io.h"
#include "lib/log.h"
#include "lib/util.h"
#include "tests/tap.h"

static char *dir;
static int quiet_fd = 2;

static struct dhcp_host hosts[] = {
	{"52:54:00:AA:bb:01", "pc01"},
	{"52-54-00-aa-bb-02", NULL},
};

static void base_full(struct dhcp_config *c)
{
	static char tftp[PATH_MAX], state[PATH_MAX];

	snprintf(tftp, sizeof(tftp), "%s/tftp", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	*c = (struct dhcp_config){
		.interface = "gcbr0",
		.listen_addr = "10.77.0.1",
		.mode = DHCP_MODE_FULL,
		.range_start = "10.77.0.100",
		.range_end = "10.77.0.199",
		.lease_secs = 600,
		.tftp_root = tftp,
		.http_base = "http://10.77.0.1:8080/",
		.state_dir = state,
		.hosts = hosts,
		.n_hosts = 2,
	};
}

/* Does text hold line as a whole line? */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line))) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

static void test_mac_and_names(void)
{
	uint8_t m[6];
	char s[18];

	is_int(dhcp_mac_parse("52:54:00:AA:bb:01", m), 0, "colon MAC, mixed case");
	dhcp_mac_format(m, ':', s);
	is_str(s, "52:54:00:aa:bb:01", "MAC formats lowercase");
	is_int(dhcp_mac_parse("52-54-00-aa-bb-01", m), 0, "hyphen MAC (iPXE hexhyp)");
	dhcp_mac_format(m, '-', s);
	is_str(s, "52-54-00-aa-bb-01", "hyphen format");
	is_int(dhcp_mac_parse("52:54:00:aa:bb", m), -EINVAL, "short MAC rejected");
	is_int(dhcp_mac_parse("52:54:00:aa:bb:0g", m), -EINVAL, "non-hex MAC rejected");
	is_int(dhcp_mac_parse("52:54-00:aa:bb:01", m), -EINVAL, "mixed separators rejected");
	is_int(dhcp_mac_parse("52:54:00:aa:bb:01\n", m), -EINVAL, "MAC with newline rejected");
	is_int(dhcp_mac_parse("52:54:00:aa:bb:01,ignore", m), -EINVAL, "MAC with junk rejected");
	is_int(dhcp_mac_parse("", m), -EINVAL, "empty MAC rejected");

	ok(dhcp_hostname_is_valid("pc01"), "pc01 is a hostname");
	ok(dhcp_hostname_is_valid("Lab-PC-7"), "Lab-PC-7 is a hostname");
	ok(!dhcp_hostname_is_valid("pc01\ndhcp-range=1.2.3.4"), "name with newline rejected");
	ok(!dhcp_hostname_is_valid("45m"), "lease-time-like name rejected");
	ok(!dhcp_hostname_is_valid("3600"), "number rejected");
	ok(!dhcp_hostname_is_valid("ignore"), "keyword ignore rejected");
	ok(!dhcp_hostname_is_valid("Infinite"), "keyword infinite rejected");
	ok(!dhcp_hostname_is_valid("a,b"), "comma rejected");
	ok(!dhcp_hostname_is_valid("a b"), "blank rejected");
	ok(!dhcp_hostname_is_valid("a.b"), "dot rejected");
	ok(!dhcp_hostname_is_valid("pc-"), "trailing hyphen rejected");
	ok(!dhcp_hostname_is_valid(""), "empty name rejected");
	ok(!dhcp_hostname_is_valid(
		   "a123456789012345678901234567890123456789012345678901234567890123"),
	   "64-char name rejected");
}

static void test_render_full(void)
{
	struct dhcp_config c;
	char *conf = NULL, *url;

	base_full(&c);
	is_int(dhcp_render_conf(&c, &conf), 0, "full mode renders");
	ok(conf && has_line(conf, "port=0"), "DNS off");
	ok(conf && has_line(conf, "interface=gcbr0"), "interface");
	ok(conf && has_line(conf, "bind-interfaces"), "bind-interfaces");
	ok(conf && has_line(conf, "log-facility=-"), "logs to stderr");
	ok(conf && has_line(conf, "dhcp-authoritative"), "authoritative");
	ok(conf && has_line(conf, "no-ping"), "no-ping");
	ok(conf && has_line(conf, "dhcp-range=10.77.0.100,10.77.0.199,600"), "range and lease");
	ok(conf && has_line(conf, "enable-tftp"), "tftp on");
	ok(conf && strstr(conf, "\ntftp-root=") && strstr(conf, "/tftp\n"), "tftp root");
	ok(conf && strstr(conf, "/state/hosts.d\n"), "hosts dir");
	ok(conf && has_line(conf, "dhcp-match=set:ipxe,175"), "iPXE by option 175");
	ok(conf && has_line(conf, "dhcp-userclass=set:ipxe,iPXE"), "iPXE by user class");
	ok(conf && has_line(conf, "dhcp-match=set:efi64,option:client-arch,7"), "UEFI arch 7");
	ok(conf && has_line(conf, "dhcp-match=set:efi64,option:client-arch,9"), "UEFI arch 9");
	ok(conf && has_line(conf, "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,10.77.0.1"),
	   "BIOS gets undionly.kpxe");
	ok(conf && has_line(conf, "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi,,10.77.0.1"),
	   "UEFI gets ipxe.efi");
	ok(conf && has_line(conf, "dhcp-boot=tag:ipxe,http://10.77.0.1:8080/boot.ipxe?mac=${net0/"
				  "mac:hexhyp},,10.77.0.1"),
	   "iPXE gets the script URL (trailing '/' of the base dropped)");
	ok(conf && has_line(conf, "dhcp-option=tag:ipxe,encap:175,176,1b"), "no ProxyDHCP wait");
	ok(conf && !strstr(conf, "enable-ra"), "no RA unless asked");
	ok(conf && !strstr(conf, "pxe-service"), "no pxe-service in full mode");
	ok(conf && !strstr(conf, "dhcp-ignore"), "unknown machines answered by default");
	free(conf);

	c.ipv6_ra = 1;
	c.known_only = 1;
	c.netmask = "255.255.255.0";
	c.lease_secs = 0;
	c.user = "dnsmasq";
	is_int(dhcp_render_conf(&c, &conf), 0, "full mode with options renders");
	ok(conf && has_line(conf, "enable-ra"), "RA on");
	ok(conf && has_line(conf, "dhcp-range=::,constructor:gcbr0,ra-only"), "RA-only range");
	ok(conf && has_line(conf, "dhcp-ignore=tag:!known"), "known only");
	ok(conf && has_line(conf, "dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,3600"),
	   "netmask, default lease 1 h");
	ok(conf && has_line(conf, "user=dnsmasq"), "user");
	free(conf);

	url = dhcp_boot_url(&c);
	is_str(url, "http://10.77.0.1:8080/boot.ipxe?mac=${net0/mac:hexhyp}", "boot URL");
	free(url);
}

static void test_render_proxy(void)
{
	struct dhcp_config c;
	char *conf = NULL;

	base_full(&c);
	c.mode = DHCP_MODE_PROXY;
	c.range_start = c.range_end = NULL;
	c.proxy_subnet = "10.77.0.0";
	is_int(dhcp_render_conf(&c, &conf), 0, "proxy mode renders");
	ok(conf && has_line(conf, "dhcp-range=10.77.0.0,proxy"), "proxy range");
	ok(conf && has_line(conf, "pxe-service=tag:!ipxe,x86PC,\"goldcache network boot\","
				  "undionly.kpxe,10.77.0.1"),
	   "BIOS PXE service");
	ok(conf && has_line(conf, "pxe-service=tag:!ipxe,x86-64_EFI,\"goldcache network boot\","
				  "ipxe.efi,10.77.0.1"),
	   "UEFI PXE service");
	ok(conf && has_line(conf, "dhcp-boot=tag:ipxe,http://10.77.0.1:8080/boot.ipxe?mac=${net0/"
				  "mac:hexhyp},,10.77.0.1"),
	   "iPXE gets the script URL with a next-server");
	ok(conf && !strstr(conf, "dhcp-authoritative"),
	   "never authoritative beside another server");
	ok(conf && !strstr(conf, "encap:175"), "no no-pxedhcp: iPXE must wait for us");
	ok(conf && !strstr(conf, "dhcp-boot=tag:!ipxe"), "PXE ROMs served by pxe-service only");
	free(conf);

	c.proxy_subnet = "10.77.0";
	is_int(dhcp_render_conf(&c, &conf), -EINVAL, "bad proxy subnet rejected");
	ok(conf == NULL, "nothing rendered");
}

static void test_hostile(void)
{
	struct dhcp_config c;
	struct dhcp_host bad[2];
	char *conf = NULL, path[PATH_MAX];
	struct stat st;
	int i;
	static const struct {
		const char *what;
		size_t off;
		const char *value;
	} cases[] = {
		{"interface with newline", offsetof(struct dhcp_config, interface), "br0\nport=53"},
		{"interface too long", offsetof(struct dhcp_config, interface), "abcdefghijklmnop"},
		{"listen not IPv4", offsetof(struct dhcp_config, listen_addr), "10.77.0.300"},
		{"range start junk", offsetof(struct dhcp_config, range_start), "10.77.0.1,x"},
		{"tftp root relative", offsetof(struct dhcp_config, tftp_root), "tftp"},
		{"tftp root newline", offsetof(struct dhcp_config, tftp_root), "/x\nenable-ra"},
		{"tftp root comma", offsetof(struct dhcp_config, tftp_root), "/x,eth0"},
		{"tftp root blank", offsetof(struct dhcp_config, tftp_root), "/a b"},
		{"state dir hash", offsetof(struct dhcp_config, state_dir), "/a #b"},
		{"http base not http", offsetof(struct dhcp_config, http_base), "ftp://x"},
		{"http base with $", offsetof(struct dhcp_config, http_base), "http://${ip}"},
		{"http base with quote", offsetof(struct dhcp_config, http_base), "http://a\"b"},
		{"http base with comma", offsetof(struct dhcp_config, http_base), "http://a,b"},
		{"http base empty host", offsetof(struct dhcp_config, http_base), "http:///"},
		{"http base too long", offsetof(struct dhcp_config, http_base),
		 "http://a23456789012345678901234567890123456789012345678901234567890123456789012"
		 "3456789012345678901234567890"},
		{"user with newline", offsetof(struct dhcp_config, user), "root\nport=53"},
	};

	for (i = 0; i < (int)ARRAY_SIZE(cases); i++) {
		base_full(&c);
		*(const char **)((char *)&c + cases[i].off) = cases[i].value;
		is_int(dhcp_render_conf(&c, &conf), -EINVAL, "rejected: %s", cases[i].what);
		free(conf);
		conf = NULL;
	}
	base_full(&c);
	c.range_start = "10.77.0.200";
	is_int(dhcp_config_check(&c), -EINVAL, "rejected: range backwards");
	base_full(&c);
	c.lease_secs = 60;
	is_int(dhcp_config_check(&c), -EINVAL, "rejected: lease below 2 minutes");
	base_full(&c);
	c.mode = (enum dhcp_mode)7;
	is_int(dhcp_config_check(&c), -EINVAL, "rejected: unknown mode");

	base_full(&c);
	c.hosts = bad;
	c.n_hosts = 1;
	bad[0] = (struct dhcp_host){"52:54:00:aa:bb:01", "pc01\ndhcp-range=1.1.1.1,1.1.1.9"};
	is_int(dhcp_write(&c, NULL), -EINVAL, "dhcp_write rejects a name with a newline");
	snprintf(path, sizeof(path), "%s/state/dnsmasq.conf", dir);
	ok(stat(path, &st) < 0 && errno == ENOENT, "nothing written");
	bad[0] = (struct dhcp_host){"52:54:00:aa:bb:01 ,x", "pc01"};
	is_int(dhcp_write(&c, NULL), -EINVAL, "dhcp_write rejects a MAC with junk");
	bad[0] = (struct dhcp_host){"52:54:00:aa:bb:01", "45m"};
	is_int(dhcp_write(&c, NULL), -EINVAL, "dhcp_write rejects a lease-time name");
	bad[0] = (struct dhcp_host){"52:54:00:aa:bb:01", "pc01"};
	bad[1] = (struct dhcp_host){"52-54-00-AA-BB-01", "pc02"};
	c.n_hosts = 2;
	is_int(dhcp_config_check(&c), -EINVAL, "same MAC twice (other spelling) rejected");
	bad[1] = (struct dhcp_host){"52:54:00:aa:bb:02", "PC01"};
	is_int(dhcp_config_check(&c), -EINVAL, "same name twice rejected");
	ok(stat(path, &st) < 0 && errno == ENOENT, "still nothing written");
}

static int file_is(const char *path, const char *want)
{
	char *got = NULL;
	size_t len = 0;
	int r;

	if (io_read_file(path, 4096, &got, &len) < 0)
		return 0;
	r = strcmp(got, want) == 0;
	free(got);
	return r;
}

static void test_write(void)
{
	struct dhcp_config c;
	struct dhcp_host hs[3];
	char path[PATH_MAX], fname[18], *data = NULL;
	unsigned ch = 99;
	struct stat st;

	is_int(dhcp_render_host(&hosts[0], fname, &data), 0, "host renders");
	is_str(fname, "52-54-00-aa-bb-01", "host file named by MAC");
	is_str(data, "52:54:00:aa:bb:01,pc01\n", "host line: MAC, name");
	free(data);
	is_int(dhcp_render_host(&hosts[1], fname, &data), 0, "host without name renders");
	is_str(data, "52:54:00:aa:bb:02\n", "host line: MAC only");
	free(data);

	base_full(&c);
	is_int(dhcp_write(&c, &ch), 0, "first write");
	is_int(ch, DHCP_CHANGED_CONF | DHCP_CHANGED_HOSTS_ADD, "conf and hosts new");
	snprintf(path, sizeof(path), "%s/state/hosts.d/52-54-00-aa-bb-01", dir);
	ok(file_is(path, "52:54:00:aa:bb:01,pc01\n"), "host file content");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "host file readable by dnsmasq");
	is_int(dhcp_write(&c, &ch), 0, "second write");
	is_int(ch, 0, "nothing changed, nothing rewritten");

	hs[0] = hosts[0];
	hs[1] = hosts[1];
	hs[2] = (struct dhcp_host){"52:54:00:aa:bb:03", "pc03"};
	c.hosts = hs;
	c.n_hosts = 3;
	is_int(dhcp_write(&c, &ch), 0, "host added");
	is_int(ch, DHCP_CHANGED_HOSTS_ADD, "only an add: no restart, no SIGHUP");

	hs[2].name = "pc3";
	is_int(dhcp_write(&c, &ch), 0, "host renamed");
	is_int(ch, DHCP_CHANGED_HOSTS_DEL, "a rewrite needs SIGHUP");

	/* a stale temp file from a crash and a file we do not own */
	snprintf(path, sizeof(path), "%s/state/hosts.d/.52-54-00-aa-bb-09.tmp.abcdef", dir);
	ok(io_write_file_atomic(path, "x", 1, 0644) == 0, "stale temp planted");
	snprintf(path, sizeof(path), "%s/state/hosts.d/README", dir);
	ok(io_write_file_atomic(path, "x", 1, 0644) == 0, "foreign file planted");
	c.n_hosts = 1;
	is_int(dhcp_write(&c, &ch), 0, "hosts removed");
	is_int(ch, DHCP_CHANGED_HOSTS_DEL, "removal needs SIGHUP");
	snprintf(path, sizeof(path), "%s/state/hosts.d/52-54-00-aa-bb-03", dir);
	ok(stat(path, &st) < 0, "removed host's file gone");
	snprintf(path, sizeof(path), "%s/state/hosts.d/.52-54-00-aa-bb-09.tmp.abcdef", dir);
	ok(stat(path, &st) < 0, "stale temp file removed");
	snprintf(path, sizeof(path), "%s/state/hosts.d/README", dir);
	ok(stat(path, &st) == 0, "foreign file kept");

	c.lease_secs = 1200;
	is_int(dhcp_write(&c, &ch), 0, "config changed");
	is_int(ch, DHCP_CHANGED_CONF, "a config change needs a restart");

	/* an fsync failure is an error and leaves the old config in place */
	c.lease_secs = 1800;
	setenv("GOLDCACHE_FAULT", "fsync:1:EIO", 1);
	io_fault_reset();
	is_int(dhcp_write(&c, &ch), -EIO, "fsync EIO reported");
	unsetenv("GOLDCACHE_FAULT");
	io_fault_reset();
	snprintf(path, sizeof(path), "%s/state/dnsmasq.conf", dir);
	{
		char *got = NULL;
		size_t len;

		ok(io_read_file(path, 1 << 20, &got, &len) == 0 && strstr(got, ",1200\n"),
		   "old config still there");
		free(got);
	}
}

/* A state dir dnsmasq cannot reach once it dropped root is reported. */
static void test_unreachable(void)
{
	struct dhcp_config c;
	char priv[PATH_MAX], state[PATH_MAX + 16], logp[PATH_MAX + 16], *text = NULL;
	size_t len;
	int fd;

	snprintf(priv, sizeof(priv), "%s/private", dir);
	snprintf(state, sizeof(state), "%s/dhcp", priv);
	snprintf(logp, sizeof(logp), "%s/warn.log", dir);
	mkdir(priv, 0700);
	base_full(&c);
	c.state_dir = state;
	fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	log_set_level(LOG_WARN);
	log_set_fd(fd);
	is_int(dhcp_write(&c, NULL), 0, "write into a private folder works");
	log_set_level(LOG_ERROR);
	log_set_fd(quiet_fd);
	close(fd);
	ok(io_read_file(logp, 65536, &text, &len) == 0 && strstr(text, "cannot reach") &&
		   strstr(text, "(mode 0700)"),
	   "a warning names the folder dnsmasq cannot search");
	free(text);
}

static void test_argv(void)
{
	struct dhcp_config c;
	char **av, want[PATH_MAX];

	base_full(&c);
	av = dhcp_argv(&c, NULL);
	snprintf(want, sizeof(want), "--conf-file=%s/state/dnsmasq.conf", dir);
	is_str(av[0], "dnsmasq", "argv[0]");
	is_str(av[1], "--keep-in-foreground", "foreground");
	is_str(av[2], want, "conf file");
	is_str(av[3], "--pid-file", "no pid file");
	ok(av[4] == NULL, "argv ends");
	dhcp_argv_free(av);
	av = dhcp_argv(&c, "/usr/sbin/dnsmasq");
	is_str(av[0], "/usr/sbin/dnsmasq", "explicit dnsmasq path");
	dhcp_argv_free(av);
}

static void test_boot_files(void)
{
	char src[PATH_MAX], dst[PATH_MAX], path[PATH_MAX + 64];
	int n = -1;

	snprintf(src, sizeof(src), "%s/ipxe", dir);
	snprintf(dst, sizeof(dst), "%s/tftp-boot", dir);
	io_mkdir_p(src, 0755);
	is_int(dhcp_install_boot_files(dst, src, &n), -ENOENT, "missing iPXE files reported");
	snprintf(path, sizeof(path), "%s/undionly.kpxe", src);
	io_write_file_atomic(path, "bios", 4, 0644);
	snprintf(path, sizeof(path), "%s/ipxe.efi", src);
	io_write_file_atomic(path, "uefi", 4, 0644);
	is_int(dhcp_install_boot_files(dst, src, &n), 0, "install");
	is_int(n, 2, "both files copied");
	snprintf(path, sizeof(path), "%s/ipxe.efi", dst);
	ok(file_is(path, "uefi"), "content copied");
	is_int(dhcp_install_boot_files(dst, src, &n), 0, "install again");
	is_int(n, 0, "unchanged files not rewritten");
	snprintf(path, sizeof(path), "%s/ipxe.efi", src);
	io_write_file_atomic(path, "uefi2", 5, 0644);
	is_int(dhcp_install_boot_files(dst, src, &n), 0, "install after an update");
	is_int(n, 1, "only the changed file copied");
}

int main(void)
{
	enum dhcp_mode m;

	log_init("test-dhcp", LOG_ERROR);
	/* the error paths log by design; keep make check's output readable */
	quiet_fd = getenv("GC_UNIT_VERBOSE") ? 2 : open("/dev/null", O_WRONLY | O_CLOEXEC);
	log_set_fd(quiet_fd);
	dir = tap_tmpdir();
	test_mac_and_names();
	is_int(dhcp_mode_parse("proxy", &m), 0, "mode proxy parses");
	ok(m == DHCP_MODE_PROXY, "proxy");
	is_int(dhcp_mode_parse("Full", &m), -EINVAL, "mode is case-sensitive");
	test_render_full();
	test_render_proxy();
	test_hostile();
	test_write();
	test_unreachable();
	test_argv();
	test_boot_files();
	tap_rmtree(dir);
	return done_testing();
}
