/*
 * partitions.h - which outbox table a partition's rows belong to.
 *
 * wal2json names a row of a partitioned table by its leaf partition, while
 * table.include.list names the partitioned table; the pipeline streams such
 * a table's whole schema and asks here about every other table it sees
 * there.  Answers come from the server's catalog (pg_partition_ancestors,
 * any depth) over a normal connection of this module's own, and are cached,
 * "not a partition of an outbox table" included; a partition created while
 * running is found on its first row.
 *
 * Errors: OBX_RETRY when the server cannot be asked now (errstr says why).
 * Single-threaded.
 */
#ifndef OUTBOXD_PARTITIONS_H
#define OUTBOXD_PARTITIONS_H

#include "outboxd/common.h"
#include "outboxd/config.h"

typedef struct obx_partitions obx_partitions_t;

/* `conf` is borrowed and must outlive the resolver; connects lazily. */
obx_partitions_t *obx_partitions_new(const obx_config_t *conf);
void obx_partitions_destroy(obx_partitions_t *parts);

/* What a table is, for the router. */
typedef enum {
	OBX_PARTITION_OF,   /* a partition of conf->tables[*index] */
	OBX_PARTITION_NONE, /* an unrelated table */
	OBX_PARTITION_GONE, /* no longer in the catalog: cannot tell */
} obx_partition_kind_t;

obx_err_t obx_partitions_lookup(obx_partitions_t *parts, const char *schema,
				const char *table, obx_partition_kind_t *kind,
				size_t *index, char *errstr,
				size_t errstr_size);

#endif
