/* An iSCSI client check of what a target really enforces (libiscsi): log in
 * as a given initiator with CHAP and try one WRITE(10) of block 0, rewriting
 * the block's own bytes (read first), so a LUN that wrongly accepts the write
 * keeps its content. Used by gc-targets write-probe (tests, operators verifying
 * that gold LUNs are read-only at the target, not only in the initiator). */
#ifndef GC_TARGETS_PROBE_H
#define GC_TARGETS_PROBE_H

enum tgt_probe_result {
	TGT_PROBE_WRITTEN, /* the target accepted the write */
	TGT_PROBE_PROTECTED, /* CHECK CONDITION, sense key DATA PROTECT */
	TGT_PROBE_OTHER, /* another SCSI error */
};

/* url is iscsi://HOST[:PORT]/IQN/LUN (numeric host). secret may be NULL (no
 * CHAP). Returns 0 and *result, or -ECONNREFUSED when login failed, -EIO on a
 * transport error (logged with libiscsi's message). */
int tgt_probe_write(const char *url, const char *initiator, const char *user, const char *secret,
		    enum tgt_probe_result *result);

#endif
