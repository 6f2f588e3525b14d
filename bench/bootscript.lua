-- wrk script for bench/bootscript.sh: every request asks for the boot script
-- of the next of 1,000 distinct MACs (52-54-00-b0-00-00 .. 52-54-00-b0-03-e7),
-- cycling, as a boot storm of 1,000 machines would.
local n = 0
request = function()
	local i = n % 1000
	n = n + 1
	return wrk.format("GET", string.format("/boot.ipxe?mac=52-54-00-b0-%02x-%02x",
		math.floor(i / 256), i % 256))
end
