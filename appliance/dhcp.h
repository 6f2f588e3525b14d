/* DHCP/TFTP for the boot network: goldcached's view of dnsmasq.
 *
 * From a plain struct dhcp_config this module renders dnsmasq's main config
 * file and a hosts directory (one file per known machine, dhcp-hostsdir), publishes
 * them atomically, gives the argv to run dnsmasq in the foreground, and installs
 * the iPXE boot files into the TFTP root. It starts nothing itself: goldcached
 * supervises the process (spawn_start with dhcp_argv()).
 *
 * The boot chain it configures:
 *   BIOS PXE ROM (client arch 0)      -> TFTP undionly.kpxe   (iPXE, chainloaded)
 *   UEFI x86-64 (client arch 7 or 9)  -> TFTP ipxe.efi
 *   iPXE (option 175 or user class iPXE) -> HTTP dhcp_boot_url():
 *       HTTP_BASE/boot.ipxe?mac=${net0/mac:hexhyp}
 *   iPXE expands ${...} in the DHCP filename, so goldcached's /boot.ipxe sees the
 *   MAC as "52-54-00-12-34-56" (dhcp_mac_parse accepts that form).
 *
 * Applying a change (dhcp_write's *changes):
 *   DHCP_CHANGED_CONF      main config differs: restart dnsmasq
 *   DHCP_CHANGED_HOSTS_DEL a host file was removed or rewritten: SIGHUP dnsmasq
 *                          (dnsmasq only ever adds host records on its own)
 *   DHCP_CHANGED_HOSTS_ADD only new host files: nothing to do, dnsmasq's inotify
 *                          reads them within a moment. */
#ifndef GC_APPLIANCE_DHCP_H
#define GC_APPLIANCE_DHCP_H

#include <stddef.h>
#include <stdint.h>

enum dhcp_mode {
	DHCP_MODE_FULL, /* dnsmasq hands out addresses: an isolated boot network */
	DHCP_MODE_PROXY, /* another server hands out addresses; we add only boot info */
};

struct dhcp_host {
	const char *mac; /* "aa:bb:cc:dd:ee:ff" or "aa-bb-cc-dd-ee-ff", any case */
	const char *name; /* DNS label: letter first, [A-Za-z0-9-], <= 63; or NULL */
};

struct dhcp_config {
	const char *interface; /* the boot network's interface (a bridge, a NIC) */
	const char *listen_addr; /* our IPv4 address on it: TFTP server, next-server */
	enum dhcp_mode mode;
	const char *range_start; /* full: first address handed out */
	const char *range_end; /* full: last address handed out */
	const char *netmask; /* full: optional; dnsmasq takes the interface's */
	const char *proxy_subnet; /* proxy: network address, e.g. "192.168.1.0" */
	const char *proxy_netmask; /* proxy: optional */
	unsigned lease_secs; /* full: lease time; 0 = 1 hour; at least 120 */
	const char *tftp_root; /* holds undionly.kpxe and ipxe.efi */
	const char *http_base; /* "http://10.77.0.1:8080": goldcached's HTTP */
	const char *state_dir; /* dnsmasq.conf, hosts.d/, dnsmasq.leases live here */
	const struct dhcp_host *hosts;
	size_t n_hosts;
	int known_only; /* answer only the hosts listed (dhcp-ignore=tag:!known) */
	int ipv6_ra; /* full: send IPv6 router adverts (iPXE waits ~16 s without) */
	const char *user; /* dnsmasq drops privileges to this user; NULL: its default */
};

/* Bits of dhcp_write's *changes. */
#define DHCP_CHANGED_CONF 1u
#define DHCP_CHANGED_HOSTS_ADD 2u
#define DHCP_CHANGED_HOSTS_DEL 4u

/* Names and files inside state_dir. */
#define DHCP_CONF_NAME "dnsmasq.conf"
#define DHCP_HOSTS_DIR "hosts.d"
#define DHCP_LEASES_NAME "dnsmasq.leases"

/* Boot files copied into tftp_root by dhcp_install_boot_files. */
#define DHCP_BIOS_FILE "undionly.kpxe"
#define DHCP_UEFI_FILE "ipxe.efi"
#define DHCP_IPXE_DIR "/usr/lib/ipxe"

/* Parses a MAC address in colon or hyphen form (mixed case); 0 or -EINVAL. */
int dhcp_mac_parse(const char *s, uint8_t mac[6]);
/* Formats mac as "aa:bb:cc:dd:ee:ff" (sep ':') or "aa-bb-..." (sep '-') into out[18]. */
void dhcp_mac_format(const uint8_t mac[6], char sep, char out[18]);
/* Is s a name dnsmasq will take as a hostname and nothing else (not a lease
 * time such as "45m", not "ignore", "infinite")? 1 or 0. */
int dhcp_hostname_is_valid(const char *s);

int dhcp_mode_parse(const char *s, enum dhcp_mode *out);
const char *dhcp_mode_name(enum dhcp_mode m);

/* Checks every field (addresses, paths, URL, hosts: no duplicate MAC) and logs
 * the first problem naming the field. 0 or -EINVAL. */
int dhcp_config_check(const struct dhcp_config *c);

/* The filename iPXE clients get: HTTP_BASE/boot.ipxe?mac=${net0/mac:hexhyp}.
 * Heap string, caller frees. */
char *dhcp_boot_url(const struct dhcp_config *c);

/* Renders the main config (checked first). *out is a heap string the caller frees.
 * 0 or -EINVAL. */
int dhcp_render_conf(const struct dhcp_config *c, char **out);

/* Renders one hosts-dir file: its name (the MAC, "aa-bb-cc-dd-ee-ff") into
 * fname[18] and its content into *out (heap, caller frees). 0 or -EINVAL. */
int dhcp_render_host(const struct dhcp_host *h, char fname[18], char **out);

/* Writes state_dir/dnsmasq.conf and state_dir/hosts.d/ (creating the folders),
 * each file published atomically and only when its content changed; removes
 * host files of machines no longer listed. *changes (may be NULL) gets the
 * DHCP_CHANGED_* bits. 0 or a negative errno (logged). */
int dhcp_write(const struct dhcp_config *c, unsigned *changes);

/* The argv that runs dnsmasq in the foreground on state_dir/dnsmasq.conf, logging
 * to stderr, with no pid file: a NULL-terminated heap array, free with
 * dhcp_argv_free. dnsmasq is looked up in PATH unless dnsmasq_path is set. */
char **dhcp_argv(const struct dhcp_config *c, const char *dnsmasq_path);
void dhcp_argv_free(char **argv);

/* Copies undionly.kpxe and ipxe.efi from ipxe_dir (NULL: DHCP_IPXE_DIR) into
 * tftp_root (created if missing), atomically and only when the content differs;
 * *changed (may be NULL) is set to the number of files written. 0 or -errno. */
int dhcp_install_boot_files(const char *tftp_root, const char *ipxe_dir, int *changed);

#endif
