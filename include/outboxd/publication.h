/*
 * publication.h - the pgoutput publication on the outbox tables
 * (publication.name), seen and kept in shape over a normal connection.
 *
 * pgoutput decodes every change with the publication as it was when the
 * change was written: a table added later is published from then on only,
 * and a publication must exist before the slot it is read through.  So it
 * is made ready before a slot is created, and an added table is logged with
 * the LSN its events start at.
 *
 * Errors: OBX_CONFIG when the publication does not fit and
 * publication.autocreate.mode=disabled (or it does not publish INSERTs, or
 * filters an outbox table's rows or columns, which no mode changes);
 * OBX_FATAL when a statement fails (e.g. privileges); errstr names the
 * publication, the tables and what to run.  Single-threaded.
 */
#ifndef OUTBOXD_PUBLICATION_H
#define OUTBOXD_PUBLICATION_H

#include <stdbool.h>

#include "outboxd/admin.h"
#include "outboxd/config.h"

typedef struct {
	bool exists;
	bool publishes_insert;
	/* UPDATE and TRUNCATE reach table.op.invalid.behavior only when
	 * published */
	bool publishes_update, publishes_truncate;
	/* outbox tables it does not publish, "schema.table, ..." */
	char missing[1024];
	/* outbox tables it publishes with a row filter or column list */
	char filtered[1024];
} obx_publication_info_t;

/* What the publication is now, for this config's outbox tables. */
obx_err_t obx_publication_inspect(obx_admin_t *admin, const obx_config_t *conf,
				  obx_publication_info_t *out, char *errstr,
				  size_t errstr_size);

/*
 * Creates the publication when missing and adds missing outbox tables to it
 * (publication.autocreate.mode=filtered), or refuses when it does not fit.
 * Logs what it changed.
 */
obx_err_t obx_publication_ensure(obx_admin_t *admin, const obx_config_t *conf,
				 char *errstr, size_t errstr_size);

/* The CREATE PUBLICATION statement this config needs, for messages. */
void obx_publication_create_sql(const obx_config_t *conf, char *buf,
				size_t size);

#endif
