/*
 * admin.h - the connector's slot and server, seen over a normal (not
 * replication) connection: slot status, create, drop, advance, and the
 * facts `outboxd check` needs.  Every value reaches SQL as a parameter.
 *
 * Errors: OBX_RETRY when the server cannot be reached, OBX_FATAL for a
 * failed command; the text is in errstr.  One connection per obx_admin_t,
 * used by one thread at a time.
 */
#ifndef OUTBOXD_ADMIN_H
#define OUTBOXD_ADMIN_H

#include <stdbool.h>

#include "outboxd/common.h"
#include "outboxd/config.h"
#include "outboxd/pg.h"

typedef struct obx_admin obx_admin_t;

obx_admin_t *obx_admin_connect(const obx_config_t *conf,
			       const char *application_name, char *errstr,
			       size_t errstr_size);
void obx_admin_destroy(obx_admin_t *admin);

/* False once the connection broke (reconnect with a new obx_admin_t). */
bool obx_admin_ok(const obx_admin_t *admin);

/* obx_pg_slot_info() on this connection. */
obx_err_t obx_admin_slot_info(obx_admin_t *admin, const char *slot,
			      obx_slot_info_t *out, char *errstr,
			      size_t errstr_size);

obx_err_t obx_admin_slot_create(obx_admin_t *admin, const char *slot,
				const char *plugin, obx_lsn_t *at, char *errstr,
				size_t errstr_size);

obx_err_t obx_admin_slot_drop(obx_admin_t *admin, const char *slot,
			      char *errstr, size_t errstr_size);

/* pg_replication_slot_advance(); *moved_to is where it ended up. */
obx_err_t obx_admin_slot_advance(obx_admin_t *admin, const char *slot,
				 obx_lsn_t to, obx_lsn_t *moved_to,
				 char *errstr, size_t errstr_size);

/*
 * Runs a query with text parameters and returns the first column of the
 * first row into out (empty string for NULL or no row).  For checks.
 */
obx_err_t obx_admin_query_value(obx_admin_t *admin, const char *sql,
				int nparams, const char *const *params,
				char *out, size_t out_size, char *errstr,
				size_t errstr_size);

/*
 * Whether every table of table.include.list exists, by its exact name (as
 * resolved in config.c).  OBX_CONFIG, naming the table and the nearest
 * existing one, when one does not: outboxd would stream and match nothing.
 * OBX_RETRY when the server cannot be asked now.  partitioned (NULL, or
 * conf->ntables entries) says which of them are partitioned tables.  Opens
 * its own connection.
 */
obx_err_t obx_admin_verify_tables(const obx_config_t *conf, bool *partitioned,
				  char *errstr, size_t errstr_size);

/* Runs a statement with text parameters, ignoring any result. */
obx_err_t obx_admin_exec(obx_admin_t *admin, const char *sql, int nparams,
			 const char *const *params, char *errstr,
			 size_t errstr_size);

#endif
