/* gc-dhcp: a thin command line over appliance/dhcp.c for tests, the lab and
 * operators who want to see what goldcached would hand to dnsmasq.
 *
 *   gc-dhcp render  OPTIONS        print dnsmasq.conf
 *   gc-dhcp write   OPTIONS        write state dir, print the change bits
 *   gc-dhcp argv    OPTIONS        print dnsmasq's argv, one word a line
 *   gc-dhcp install-boot TFTP_ROOT [IPXE_DIR]
 *   gc-dhcp probe IFACE [--arch N] [--ipxe] [--mac MAC] [--timeout MS]
 *       a PXE client's first steps, for tests: broadcast one DHCPDISCOVER the way
 *       a PXE ROM (or iPXE) does and print every offer; for a ProxyDHCP offer
 *       without a file, do PXE boot server discovery (DHCPREQUEST to port 4011)
 *       and print the answer. One line per packet: key=value words.
 *
 * Exit codes: 0 ok, 1 operation failed, 2 usage or bad configuration. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "appliance/dhcp.h"
#include "lib/log.h"
#include "lib/util.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: gc-dhcp render|write|argv OPTIONS\n"
		"       gc-dhcp install-boot TFTP_ROOT [IPXE_DIR]\n"
		"       gc-dhcp probe IFACE [--arch N] [--ipxe] [--mac MAC] [--timeout MS]\n"
		"options: --interface IF --listen ADDR --mode full|proxy\n"
		"         --range FIRST,LAST [--netmask M] [--lease SECS] [--ipv6-ra]\n"
		"         --proxy-subnet NET [--proxy-netmask M]\n"
		"         --tftp-root DIR --http-base URL --state-dir DIR\n"
		"         [--host MAC[,NAME]]... [--known-only] [--user USER] [--dnsmasq PATH]\n");
	exit(2);
}

struct cli {
	struct dhcp_config c;
	struct dhcp_host *hosts;
	size_t cap;
	const char *dnsmasq;
};

static void parse_config(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"interface", required_argument, NULL, 'i'},
		{"listen", required_argument, NULL, 'l'},
		{"mode", required_argument, NULL, 'm'},
		{"range", required_argument, NULL, 'r'},
		{"netmask", required_argument, NULL, 'n'},
		{"lease", required_argument, NULL, 'L'},
		{"ipv6-ra", no_argument, NULL, '6'},
		{"proxy-subnet", required_argument, NULL, 'p'},
		{"proxy-netmask", required_argument, NULL, 'P'},
		{"tftp-root", required_argument, NULL, 't'},
		{"http-base", required_argument, NULL, 'h'},
		{"state-dir", required_argument, NULL, 's'},
		{"host", required_argument, NULL, 'H'},
		{"known-only", no_argument, NULL, 'k'},
		{"user", required_argument, NULL, 'u'},
		{"dnsmasq", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	struct dhcp_config *c = &cli->c;
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *comma;

		switch (o) {
		case 'i':
			c->interface = optarg;
			break;
		case 'l':
			c->listen_addr = optarg;
			break;
		case 'm':
			if (dhcp_mode_parse(optarg, &c->mode) < 0)
				die(2, "--mode: want full or proxy, not '%s'", optarg);
			break;
		case 'r':
			comma = strchr(optarg, ',');
			if (!comma)
				die(2, "--range: want FIRST,LAST");
			*comma = '\0';
			c->range_start = optarg;
			c->range_end = comma + 1;
			break;
		case 'n':
			c->netmask = optarg;
			break;
		case 'L':
			if (parse_u32(optarg, &c->lease_secs) < 0)
				die(2, "--lease: want seconds, not '%s'", optarg);
			break;
		case '6':
			c->ipv6_ra = 1;
			break;
		case 'p':
			c->proxy_subnet = optarg;
			break;
		case 'P':
			c->proxy_netmask = optarg;
			break;
		case 't':
			c->tftp_root = optarg;
			break;
		case 'h':
			c->http_base = optarg;
			break;
		case 's':
			c->state_dir = optarg;
			break;
		case 'H':
			xgrow((void **)&cli->hosts, &cli->cap, c->n_hosts + 1, sizeof(*cli->hosts));
			comma = strchr(optarg, ',');
			if (comma)
				*comma = '\0';
			cli->hosts[c->n_hosts].mac = optarg;
			cli->hosts[c->n_hosts].name = comma ? comma + 1 : NULL;
			c->n_hosts++;
			break;
		case 'k':
			c->known_only = 1;
			break;
		case 'u':
			c->user = optarg;
			break;
		case 'd':
			cli->dnsmasq = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	c->hosts = cli->hosts;
	if (dhcp_config_check(c) < 0)
		exit(2);
}

/* --- probe: just enough of a PXE client to see what the servers answer --- */

#define BOOTP_MIN 236
#define DHCP_MAGIC 0x63825363u

struct pkt {
	uint8_t b[1024];
	size_t n;
};

static void opt_put(struct pkt *p, uint8_t code, const void *data, size_t len)
{
	if (len > 255 || p->n + 2 + len > sizeof(p->b))
		die(1, "probe: packet too large");
	p->b[p->n++] = code;
	p->b[p->n++] = (uint8_t)len;
	memcpy(p->b + p->n, data, len);
	p->n += len;
}

static void build(struct pkt *p, uint8_t type, uint32_t xid, const uint8_t mac[6], int arch,
		  int ipxe, const uint8_t *boot_item, struct in_addr ciaddr)
{
	static const uint8_t prl[] = {1, 3, 6, 43, 60, 66, 67, 97, 128, 175};
	uint8_t arch_be[2] = {(uint8_t)(arch >> 8), (uint8_t)arch};
	uint8_t ndi[3] = {1, 2, 1}; /* UNDI 2.1 */
	uint8_t uuid[17] = {0};
	uint32_t magic = htonl(DHCP_MAGIC);
	char vendor[64];

	memset(p, 0, sizeof(*p));
	p->b[0] = 1; /* BOOTREQUEST */
	p->b[1] = 1; /* ethernet */
	p->b[2] = 6;
	memcpy(p->b + 4, &xid, 4);
	p->b[10] = 0x80; /* broadcast flag */
	memcpy(p->b + 12, &ciaddr, 4);
	memcpy(p->b + 28, mac, 6);
	p->n = BOOTP_MIN;
	memcpy(p->b + p->n, &magic, 4);
	p->n += 4;
	opt_put(p, 53, &type, 1);
	opt_put(p, 55, prl, sizeof(prl));
	opt_put(p, 93, arch_be, 2);
	opt_put(p, 94, ndi, 3);
	opt_put(p, 97, uuid, sizeof(uuid));
	snprintf(vendor, sizeof(vendor), "PXEClient:Arch:%05d:UNDI:002001", arch);
	opt_put(p, 60, vendor, strlen(vendor));
	if (ipxe) {
		static const uint8_t enc[] = {19, 1, 1}; /* 175: HTTP feature */

		opt_put(p, 77, "iPXE", 4);
		opt_put(p, 175, enc, sizeof(enc));
	}
	if (boot_item) {
		uint8_t o43[6] = {71, 4};

		memcpy(o43 + 2, boot_item, 4);
		opt_put(p, 43, o43, sizeof(o43));
	}
	p->b[p->n++] = 255;
}

/* Finds option code in the options area; returns its length or -1. */
static int opt_find(const uint8_t *b, size_t n, uint8_t code, const uint8_t **val)
{
	size_t i = BOOTP_MIN + 4;

	while (i < n) {
		uint8_t c = b[i], len;

		if (c == 255)
			break;
		if (c == 0) {
			i++;
			continue;
		}
		if (i + 1 >= n)
			break;
		len = b[i + 1];
		if (len > n - i - 2)
			break;
		if (c == code) {
			*val = b + i + 2;
			return len;
		}
		i += 2u + len;
	}
	return -1;
}

/* Prints one server packet; fills boot_item (first PXE menu item) when present. */
static void print_reply(const uint8_t *b, size_t n, const char *via, uint8_t boot_item[4],
			int *has_item, int *has_file)
{
	const uint8_t *v;
	char yi[INET_ADDRSTRLEN], si[INET_ADDRSTRLEN], sid[INET_ADDRSTRLEN] = "-";
	char file[129];
	int len, type = 0;

	inet_ntop(AF_INET, b + 16, yi, sizeof(yi));
	inet_ntop(AF_INET, b + 20, si, sizeof(si));
	memcpy(file, b + 108, 128);
	file[128] = '\0';
	if (opt_find(b, n, 53, &v) == 1)
		type = v[0];
	if (opt_find(b, n, 54, &v) == 4)
		inet_ntop(AF_INET, v, sid, sizeof(sid));
	len = opt_find(b, n, 67, &v);
	if (len > 0 && !file[0]) {
		memcpy(file, v, (size_t)len);
		file[len] = '\0';
	}
	*has_file = file[0] != '\0';
	*has_item = 0;
	len = opt_find(b, n, 43, &v);
	if (len > 0) {
		int i = 0;

		while (i + 2 <= len) {
			uint8_t sub = v[i], sl = v[i + 1];

			if (sub == 255 || sl > len - i - 2)
				break;
			/* PXE_BOOT_MENU: type(2) desc-len(1) desc */
			if (sub == 9 && sl >= 3 && !*has_item) {
				memcpy(boot_item, v + i + 2, 2);
				boot_item[2] = boot_item[3] = 0; /* layer 0 */
				*has_item = 1;
			}
			i += 2 + sl;
		}
	}
	printf("%s type=%d server=%s yiaddr=%s siaddr=%s file=%s pxe-menu=%s\n", via, type, sid, yi,
	       si, file[0] ? file : "-", *has_item ? "yes" : "no");
	fflush(stdout);
}

/* The IPv4 address of ifname, or 0.0.0.0. */
static struct in_addr if_addr(int fd, const char *ifname)
{
	struct ifreq ifr = {0};
	struct in_addr a = {0};

	if (strlen(ifname) >= sizeof(ifr.ifr_name))
		return a;
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	ifr.ifr_addr.sa_family = AF_INET;
	if (ioctl(fd, SIOCGIFADDR, &ifr) == 0)
		a = ((struct sockaddr_in *)(void *)&ifr.ifr_addr)->sin_addr;
	return a;
}

static int probe(int argc, char **argv)
{
	static const struct option opts[] = {
		{"arch", required_argument, NULL, 'a'},
		{"ipxe", no_argument, NULL, 'x'},
		{"mac", required_argument, NULL, 'm'},
		{"timeout", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	uint8_t mac[6] = {0x52, 0x54, 0x00, 0x77, 0x00, 0x01}, item[4];
	int arch = 0, ipxe = 0, timeout = 3000, o, fd, one = 1, asked = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	uint32_t xid = (uint32_t)getpid() * 2654435761u;
	uint64_t end;
	const char *ifname;
	struct pkt p;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'a' && parse_int(optarg, 0, 65535, &arch) == 0)
			continue;
		if (o == 'x') {
			ipxe = 1;
			continue;
		}
		if (o == 'm' && dhcp_mac_parse(optarg, mac) == 0)
			continue;
		if (o == 't' && parse_int(optarg, 1, 60000, &timeout) == 0)
			continue;
		usage();
	}
	if (optind + 1 != argc)
		usage();
	ifname = argv[optind];

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) < 0)
		die(1, "probe: socket on '%s': %s", ifname, strerror(errno));
	sa.sin_port = htons(68);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(1, "probe: bind port 68: %s", strerror(errno));
	build(&p, 1, xid, mac, arch, ipxe, NULL, (struct in_addr){0});
	sa.sin_port = htons(67);
	sa.sin_addr.s_addr = htonl(INADDR_BROADCAST);
	if (sendto(fd, p.b, p.n, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(1, "probe: send DHCPDISCOVER: %s", strerror(errno));

	end = now_ms() + (uint64_t)timeout;
	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		uint8_t buf[1500];
		int64_t left = (int64_t)(end - now_ms());
		int has_item = 0, has_file = 0;
		struct sockaddr_in from = {0};
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (left <= 0)
			break;
		if (poll(&pf, 1, (int)left) <= 0)
			continue;
		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n < BOOTP_MIN + 4 || buf[0] != 2 || memcmp(buf + 4, &xid, 4) != 0)
			continue;
		print_reply(buf, (size_t)n, ntohs(from.sin_port) == 4011 ? "pxe-ack" : "offer",
			    item, &has_item, &has_file);
		/* A ProxyDHCP offer (no address) without a file: ask its boot server on
		 * port 4011 as the PXE spec says; the answer comes back to port 68. */
		if (ntohs(from.sin_port) != 4011 && !buf[16] && !buf[17] && !buf[18] && !buf[19] &&
		    !has_file && !asked) {
			struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(4011)};
			const uint8_t *v;

			if (opt_find(buf, (size_t)n, 54, &v) != 4)
				continue;
			memcpy(&to.sin_addr, v, 4);
			asked = 1;
			/* dnsmasq answers only a client that names its address */
			build(&p, 3, xid, mac, arch, ipxe, has_item ? item : NULL,
			      if_addr(fd, ifname));
			if (sendto(fd, p.b, p.n, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
				printf("pxe-request error=%s\n", strerror(errno));
		}
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};
	const char *cmd;
	int r = 0;

	log_init("gc-dhcp", LOG_INFO);
	if (argc < 2)
		usage();
	cmd = argv[1];
	if (strcmp(cmd, "install-boot") == 0) {
		int changed = 0;

		if (argc < 3 || argc > 4)
			usage();
		r = dhcp_install_boot_files(argv[2], argc == 4 ? argv[3] : NULL, &changed);
		if (r == 0)
			printf("installed %d\n", changed);
		return r < 0 ? 1 : 0;
	}
	if (strcmp(cmd, "probe") == 0)
		return probe(argc - 1, argv + 1);

	parse_config(&cli, argc - 1, argv + 1);
	if (strcmp(cmd, "render") == 0) {
		char *conf = NULL;

		r = dhcp_render_conf(&cli.c, &conf);
		if (r == 0)
			fputs(conf, stdout);
		free(conf);
	} else if (strcmp(cmd, "write") == 0) {
		unsigned ch = 0;

		r = dhcp_write(&cli.c, &ch);
		if (r == 0)
			printf("changed%s%s%s%s\n", ch & DHCP_CHANGED_CONF ? " conf" : "",
			       ch & DHCP_CHANGED_HOSTS_ADD ? " hosts-add" : "",
			       ch & DHCP_CHANGED_HOSTS_DEL ? " hosts-del" : "",
			       ch ? "" : " nothing");
	} else if (strcmp(cmd, "argv") == 0) {
		char **av = dhcp_argv(&cli.c, cli.dnsmasq);
		size_t i;

		for (i = 0; av[i]; i++)
			printf("%s\n", av[i]);
		dhcp_argv_free(av);
	} else {
		usage();
	}
	free(cli.hosts);
	return r < 0 ? 1 : 0;
}
