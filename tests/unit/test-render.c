/* Unit tests for bootscripts/render and bootscripts/bootscript: substitution,
 * strict value charset (nothing can add an iPXE line, command or expansion),
 * malformed templates, limits, and the built-in templates for every mode. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bootscripts/bootscript.h"
#include "bootscripts/render.h"
#include "tests/tap.h"

static int rend(const char *t, const struct render_var *v, size_t n, char **out)
{
	return render_template(t, strlen(t), v, n, out, NULL, NULL);
}

static void test_substitution(void)
{
	struct render_var v[] = {{.name = "a", .value = "x"}, {.name = "b_2", .value = "y.z"}};
	char *out = NULL;

	is_int(rend("#!ipxe\necho {{a}} {{b_2}}{{a}}\n", v, 2, &out), 0, "renders two variables");
	is_str(out, "#!ipxe\necho x y.zx\n", "values substituted");
	free(out);
	is_int(rend("no vars ${net0/mac} { } }}", v, 2, &out), 0, "single braces pass through");
	is_str(out, "no vars ${net0/mac} { } }}", "literal text kept");
	free(out);
	is_int(rend("", v, 2, &out), 0, "empty template");
	is_str(out, "", "empty output");
	free(out);
}

static void test_malformed(void)
{
	struct render_var v[] = {{.name = "a", .value = "x"}};
	char *out = (char *)1;
	size_t pos = 99;

	is_int(rend("x {{a", v, 1, &out), -EINVAL, "unterminated variable");
	ok(out == NULL, "no output on error");
	is_int(rend("{{}}", v, 1, &out), -EINVAL, "empty variable name");
	is_int(rend("{{A}}", v, 1, &out), -EINVAL, "upper-case name rejected");
	is_int(rend("{{a }}", v, 1, &out), -EINVAL, "space in name rejected");
	is_int(rend("{{a}", v, 1, &out), -EINVAL, "single closing brace");
	is_int(render_template("ab{{nope}}", 10, v, 1, &out, NULL, &pos), -ENOENT,
	       "unknown variable");
	is_int(pos, 2, "error position points at the variable");
	is_int(render_template("a\0b", 3, v, 1, &out, NULL, NULL), -EINVAL, "NUL in template");
	is_int(rend("{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}", v, 1, &out), -EINVAL,
	       "overlong name");
}

static void test_unsafe_values(void)
{
	static const char *const bad[] = {
		"",	   "a b",   "a\nb",  "x\nchain http://evil/",
		"${pass}", "a#b",   "a||b",  "a&&b",
		"a;b",	   "'q'",   "\"q\"", "a\tb",
		"a\rb",	   "{{a}}", "a\\b",  "\xc3\xa9",
		"a$b",	   "a}b",
	};
	char *out = NULL;
	char big[RENDER_MAX_VALUE + 2];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct render_var v[] = {{.name = "v", .value = bad[i]}};

		is_int(rend("set x {{v}}\n", v, 1, &out), -EILSEQ, "unsafe value %zu refused", i);
	}
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ok(!render_value_is_safe(big), "overlong value refused");
	ok(render_value_is_safe("iqn.2026-11.org.example:m.pc-1"), "an IQN is safe");
	ok(render_value_is_safe("http://10.77.0.1:8080/boot/images/deb/kernel"), "a URL is safe");
	ok(render_value_is_safe("Zm9v+YmFy/YQ=="), "a base64 secret is safe");
	ok(render_words_are_safe(""), "empty words");
	ok(render_words_are_safe("quiet loglevel=3 net.ifnames=0"), "kernel arguments");
	ok(!render_words_are_safe("a  b"), "double space refused");
	ok(!render_words_are_safe(" a"), "leading space refused");
	ok(!render_words_are_safe("a "), "trailing space refused");
	ok(!render_words_are_safe("a\nb"), "newline in words refused");
	{
		struct render_var v[] = {{.name = "w", .value = "a ${x}", .words = 1}};

		is_int(rend("{{w}}", v, 1, &out), -EILSEQ, "expansion in words refused");
	}
}

static void test_limits(void)
{
	size_t n = RENDER_MAX_TEMPLATE;
	char *t = malloc(n + 2), *out = NULL;
	struct render_var v[] = {{.name = "v", .value = NULL}};
	char val[RENDER_MAX_VALUE + 1];

	memset(t, 'x', n + 1);
	t[n + 1] = '\0';
	is_int(render_template(t, n + 1, v, 0, &out, NULL, NULL), -EFBIG, "template too large");
	/* 300 substitutions of a 512-byte value exceed the 64 KiB output limit */
	memset(val, 'v', sizeof(val) - 1);
	val[sizeof(val) - 1] = '\0';
	v[0].value = val;
	for (int i = 0; i < 300; i++)
		memcpy(t + (size_t)i * 5, "{{v}}", 5);
	is_int(render_template(t, 1500, v, 1, &out, NULL, NULL), -EFBIG, "output too large");
	free(t);
}

static void test_bootscripts(void)
{
	struct bootscript_params p = {
		.mode = BOOT_CACHE,
		.mac = "52:54:00:12:34:56",
		.machine = "pc1",
		.image = "debian",
		.version = "3",
		.base_url = "http://10.77.0.1:8080",
		.kernel_url = "http://10.77.0.1:8080/boot/images/debian/kernel",
		.initrd_url = "http://10.77.0.1:8080/boot/images/debian/initrd",
		.cmdline = "quiet",
	};
	char *out = NULL;
	size_t len = 0;

	is_int(bootscript_render(&p, &out, &len), 0, "cache script renders");
	ok(out && strncmp(out, "#!ipxe\n", 7) == 0, "starts with #!ipxe");
	ok(out && strstr(out, "\nkernel http://10.77.0.1:8080/boot/images/debian/kernel "),
	   "kernel line");
	ok(out && strstr(out, " goldcache.url=http://10.77.0.1:8080 goldcache.machine=pc1 "
			      "goldcache.mode=cache "),
	   "cmdline names appliance, machine, mode");
	ok(out && strstr(out, " quiet || goto failed"), "extra kernel arguments");
	ok(out && strstr(out, "\ninitrd --name initrd.img http://10.77.0.1:8080/boot/images/"
			      "debian/initrd"),
	   "initrd line");
	ok(out && strstr(out, "\nboot || goto failed\n"), "boot line");
	ok(out && strstr(out, " BOOTIF=01-${netX/mac:hexhyp} "),
	   "BOOTIF names the NIC (iPXE expands it)");
	ok(out && !strstr(out, "{{"), "no variable left");
	is_int(len, out ? strlen(out) : 0, "length");
	free(out);

	p.mode = BOOT_STREAM;
	is_int(bootscript_render(&p, &out, NULL), 0, "stream script renders");
	ok(out && strstr(out, "goldcache.mode=stream"), "stream mode on the cmdline");
	free(out);

	p.mode = BOOT_SANBOOT;
	is_int(bootscript_render(&p, &out, NULL), -ENOENT, "sanboot needs its iSCSI values");
	p.initiator_iqn = "iqn.2026-11.org.example:i.pc1";
	p.target_iqn = "iqn.2026-11.org.example:m.pc1";
	p.portal_addr = "10.77.0.1";
	p.portal_port = "3260";
	p.chap_user = "pc1";
	p.chap_secret = "s3cret-s3cret";
	is_int(bootscript_render(&p, &out, NULL), 0, "sanboot script renders");
	ok(out && strstr(out, "\nset initiator-iqn iqn.2026-11.org.example:i.pc1\n"),
	   "initiator name set");
	ok(out && strstr(out, "\nset username pc1\nset password s3cret-s3cret\n"), "CHAP set");
	ok(out && strstr(out, "\nsanboot iscsi:10.77.0.1::3260:1:iqn.2026-11.org.example:m.pc1 "),
	   "sanboot URI names LUN 1");
	free(out);
	p.chap_secret = "x\nchain http://evil/";
	is_int(bootscript_render(&p, &out, NULL), -EILSEQ, "a secret cannot inject a line");

	p.mode = BOOT_REFUSE;
	is_int(bootscript_render(&p, &out, NULL), 0, "refuse script renders");
	ok(out && strncmp(out, "#!ipxe\n", 7) == 0 && strstr(out, "52:54:00:12:34:56 is not known"),
	   "refuse script names the MAC");
	ok(out && strstr(out, "exit 1"), "refuse script leaves iPXE");
	free(out);

	{
		enum boot_mode m;

		is_int(boot_mode_parse("sanboot", &m), 0, "mode parse");
		is_int(m, BOOT_SANBOOT, "mode value");
		is_int(boot_mode_parse("Cache", &m), -EINVAL, "mode names are exact");
		is_str(boot_mode_name(BOOT_STREAM), "stream", "mode name");
	}
}

int main(void)
{
	test_substitution();
	test_malformed();
	test_unsafe_values();
	test_limits();
	test_bootscripts();
	return done_testing();
}
