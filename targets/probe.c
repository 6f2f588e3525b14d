/* Write probe through libiscsi (see probe.h).
 *
 * Synchronous libiscsi calls, one short session: connect + login, READ
 * CAPACITY(10) for the block size, READ(10) of block 0, WRITE(10) of the same
 * bytes back. The verdict comes from the WRITE's SCSI status and sense key,
 * i.e. from the target, whatever the initiator thinks of the write-protect bit
 * (qemu refuses to open such a LUN read-write before sending anything). */
#include "targets/probe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "lib/log.h"
#include "lib/util.h"

int tgt_probe_write(const char *url_str, const char *initiator, const char *user,
		    const char *secret, enum tgt_probe_result *result)
{
	struct iscsi_context *iscsi;
	struct iscsi_url *url = NULL;
	struct scsi_task *task = NULL;
	struct scsi_readcapacity10 *rc;
	unsigned char *block = NULL;
	uint32_t bs;
	int r = -EIO;

	iscsi = iscsi_create_context(initiator);
	if (!iscsi) {
		log_error("cannot create an iSCSI context for '%s'", initiator);
		return -ENOMEM;
	}
	url = iscsi_parse_full_url(iscsi, url_str);
	if (!url) {
		log_error("bad iSCSI URL '%s': %s", url_str, iscsi_get_error(iscsi));
		r = -EINVAL;
		goto out;
	}
	iscsi_set_targetname(iscsi, url->target);
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	if (user && secret)
		iscsi_set_initiator_username_pwd(iscsi, user, secret);
	if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
		log_error("login to '%s' as '%s' failed: %s", url->target, initiator,
			  iscsi_get_error(iscsi));
		r = -ECONNREFUSED;
		goto out;
	}
	task = iscsi_readcapacity10_sync(iscsi, url->lun, 0, 0);
	if (!task || task->status != SCSI_STATUS_GOOD || !(rc = scsi_datain_unmarshall(task)) ||
	    rc->block_size == 0 || rc->block_size > (1u << 20)) {
		log_error("READ CAPACITY on '%s' LUN %d failed: %s", url->target, url->lun,
			  iscsi_get_error(iscsi));
		goto logout;
	}
	bs = rc->block_size;
	scsi_free_scsi_task(task);
	task = iscsi_read10_sync(iscsi, url->lun, 0, bs, (int)bs, 0, 0, 0, 0, 0);
	if (!task || task->status != SCSI_STATUS_GOOD || task->datain.size < (int)bs) {
		log_error("READ of block 0 on '%s' LUN %d failed: %s", url->target, url->lun,
			  iscsi_get_error(iscsi));
		goto logout;
	}
	block = xmalloc(bs);
	memcpy(block, task->datain.data, bs);
	scsi_free_scsi_task(task);
	task = iscsi_write10_sync(iscsi, url->lun, 0, block, bs, (int)bs, 0, 0, 0, 0, 0);
	if (!task) {
		log_error("WRITE on '%s' LUN %d: %s", url->target, url->lun,
			  iscsi_get_error(iscsi));
		goto logout;
	}
	if (task->status == SCSI_STATUS_GOOD)
		*result = TGT_PROBE_WRITTEN;
	else if (task->status == SCSI_STATUS_CHECK_CONDITION &&
		 task->sense.key == SCSI_SENSE_DATA_PROTECTION)
		*result = TGT_PROBE_PROTECTED;
	else
		*result = TGT_PROBE_OTHER;
	r = 0;
logout:
	iscsi_logout_sync(iscsi);
out:
	if (task)
		scsi_free_scsi_task(task);
	free(block);
	if (url)
		iscsi_destroy_url(url);
	iscsi_destroy_context(iscsi);
	return r;
}
