/*
 * decoder_pgoutput.c - PostgreSQL's built-in logical replication output,
 * protocol version 1 (src/include/replication/logicalproto.h), one message
 * per XLogData:
 *
 *   B  final LSN, commit time, xid          C  flags, commit LSN, end LSN,
 *   R  relation OID, schema, name,             commit time
 *      replica identity, columns            I  relation, 'N', tuple
 *   U  relation, ['K'|'O' tuple], 'N' tuple D  relation, 'K'|'O', tuple
 *   T  relations, options, OIDs             M  flags, LSN, prefix, content
 *   Y  type (unused: values come as text)   O  origin (unused)
 *
 * Integers are big-endian; strings NUL-terminated; a tuple is a column
 * count and per column 'n' (NULL), 'u' (unchanged TOAST, updates only) or
 * 't' + length + text.  Rows name their relation by OID: a Relation message
 * precedes a relation's first row and every change of its shape, and
 * replaces what the cache knew (ALTER TABLE mid-stream).  Versions 2-4 add
 * streamed in-progress and two-phase transactions, which stay off: only
 * committed transactions reach us, so version 1 is all we ask for.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder_internal.h"

/* microseconds from the Unix epoch to PostgreSQL's (2000-01-01) */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)

typedef struct {
	uint32_t oid;
	char *schema, *table;
	char **names; /* column names, in tuple order */
	size_t ncolumns;
} relation_t;

typedef struct {
	const obx_config_t *conf;
	relation_t *relations;
	size_t nrelations, relations_cap;
	obx_column_t *columns;
	size_t columns_cap;
	char *arena; /* NUL-terminated copies of the current row's values */
	size_t arena_cap;
	int64_t xid; /* of the transaction being streamed */
	obx_message_reader_t messages;
} pgoutput_t;

/* A bounds-checked reader over one message. */
typedef struct {
	const unsigned char *p, *end;
	bool short_read;
} reader_t;

/* A TimestampTz (microseconds since 2000-01-01) in Unix microseconds;
 * wraps rather than overflows on garbage. */
static int64_t unix_time_us(uint64_t pg_time)
{
	return (int64_t)(pg_time + (uint64_t)PG_EPOCH_OFFSET_US);
}

static bool has(reader_t *r, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		r->short_read = true;
	return !r->short_read;
}

static uint8_t get_u8(reader_t *r)
{
	return has(r, 1) ? *r->p++ : 0;
}

static uint64_t get_be(reader_t *r, size_t n)
{
	uint64_t v = 0;
	if (!has(r, n))
		return 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n;
	return v;
}

/* A NUL-terminated string in the message; NULL (short_read) without one. */
static const char *get_string(reader_t *r, size_t *len)
{
	if (r->short_read)
		return NULL;
	const unsigned char *nul = memchr(r->p, '\0', (size_t)(r->end - r->p));
	if (!nul) {
		r->short_read = true;
		return NULL;
	}
	const char *s = (const char *)r->p;
	if (len)
		*len = (size_t)(nul - r->p);
	r->p = nul + 1;
	return s;
}

static void *pgoutput_create(const obx_config_t *conf, char *errstr,
			     size_t errstr_size)
{
	pgoutput_t *d = obx_xcalloc(1, sizeof(*d));
	(void)errstr, (void)errstr_size;
	d->conf = conf;
	return d;
}

static void relation_clear(relation_t *rel)
{
	free(rel->schema);
	free(rel->table);
	for (size_t i = 0; i < rel->ncolumns; i++)
		free(rel->names[i]);
	free(rel->names);
}

static void pgoutput_destroy(void *state)
{
	pgoutput_t *d = state;
	if (!d)
		return;
	for (size_t i = 0; i < d->nrelations; i++)
		relation_clear(&d->relations[i]);
	free(d->relations);
	free(d->columns);
	free(d->arena);
	obx_message_reader_free(&d->messages);
	free(d);
}

static obx_err_t pgoutput_start_options(const void *state,
					const bool *partitioned, char *buf,
					size_t size)
{
	const pgoutput_t *d = state;
	/* partitions need nothing here: the publication publishes their rows
	 * as the partitioned table's (publish_via_partition_root) */
	(void)partitioned;
	/* publication.name is a plain identifier (config.c): no quoting */
	int n = snprintf(
	    buf, size, "(\"proto_version\" '1', \"publication_names\" '%s'%s)",
	    d->conf->publication_name,
	    d->conf->outbox_messages_prefix ? ", \"messages\" 'true'" : "");
	return n < 0 || (size_t)n >= size ? OBX_CONFIG : OBX_OK;
}

#define BAD(...) OBX_DECODE_BAD("pgoutput", __VA_ARGS__)

static relation_t *find_relation(pgoutput_t *d, uint32_t oid)
{
	for (size_t i = 0; i < d->nrelations; i++)
		if (d->relations[i].oid == oid)
			return &d->relations[i];
	return NULL;
}

/* 'R': replaces the cache entry for its OID. */
static obx_err_t decode_relation(pgoutput_t *d, reader_t *r, obx_lsn_t lsn,
				 char *errstr, size_t errstr_size)
{
	uint32_t oid = (uint32_t)get_be(r, 4);
	const char *schema = get_string(r, NULL);
	const char *table = get_string(r, NULL);
	get_u8(r); /* replica identity */
	size_t ncolumns = (size_t)get_be(r, 2);
	if (r->short_read || !*table)
		BAD("truncated Relation message");
	/* each column takes at least 10 bytes: never allocate past that */
	if (ncolumns > (size_t)(r->end - r->p) / 10)
		BAD("Relation %s.%s claims %zu columns", schema, table,
		    ncolumns);
	relation_t rel = { .oid = oid,
			   .schema =
			       obx_xstrdup(*schema ? schema : "pg_catalog"),
			   .table = obx_xstrdup(table),
			   .names = obx_xcalloc(ncolumns + 1, sizeof(char *)),
			   .ncolumns = 0 };
	for (size_t i = 0; i < ncolumns; i++) {
		get_u8(r); /* flags: part of the key */
		const char *name = get_string(r, NULL);
		get_be(r, 8); /* type OID, type modifier */
		if (r->short_read) {
			relation_clear(&rel);
			BAD("truncated column %zu of Relation %s.%s", i + 1,
			    schema, table);
		}
		rel.names[rel.ncolumns++] = obx_xstrdup(name);
	}
	relation_t *slot = find_relation(d, oid);
	if (slot) {
		relation_clear(slot);
	} else {
		if (d->nrelations == d->relations_cap) {
			d->relations_cap =
			    d->relations_cap ? d->relations_cap * 2 : 8;
			d->relations = obx_xrealloc(d->relations,
						    d->relations_cap *
							sizeof(*d->relations));
		}
		slot = &d->relations[d->nrelations++];
	}
	*slot = rel;
	return OBX_OK;
}

/*
 * A tuple of `rel` into d->columns; the values are copied, NUL-terminated,
 * into d->arena, which holds at least the message's length plus one byte
 * per column.  An unchanged TOASTed value reads as NULL: only updates and
 * deletes carry one, and neither is ever an event.
 */
static obx_err_t decode_tuple(pgoutput_t *d, reader_t *r, const relation_t *rel,
			      bool is_insert, obx_change_t *out, obx_lsn_t lsn,
			      char *errstr, size_t errstr_size)
{
	size_t n = (size_t)get_be(r, 2);
	if (r->short_read)
		BAD("truncated tuple of %s.%s", rel->schema, rel->table);
	if (n != rel->ncolumns)
		BAD("a row of %s.%s has %zu columns, its Relation message %zu",
		    rel->schema, rel->table, n, rel->ncolumns);
	char *at = d->arena;
	for (size_t i = 0; i < n; i++) {
		obx_column_t *c = &d->columns[i];
		c->name = rel->names[i];
		c->value = NULL;
		c->value_len = 0;
		char kind = (char)get_u8(r);
		if (kind == 'n' && !r->short_read)
			continue;
		if (kind == 'u' && !r->short_read) {
			if (is_insert)
				BAD("column \"%s\" of an INSERT into %s.%s is "
				    "an unchanged-TOAST marker",
				    c->name, rel->schema, rel->table);
			continue;
		}
		if (kind != 't') {
			if (r->short_read)
				BAD("truncated column \"%s\" of %s.%s", c->name,
				    rel->schema, rel->table);
			BAD("column \"%s\" of %s.%s has value kind 0x%02x, "
			    "not text",
			    c->name, rel->schema, rel->table,
			    (unsigned)(unsigned char)kind);
		}
		size_t len = (size_t)get_be(r, 4);
		if (!has(r, len))
			BAD("column \"%s\" of %s.%s is cut short", c->name,
			    rel->schema, rel->table);
		/* PostgreSQL's text never holds a NUL byte (wal2json's
		 * \u0000 is refused alike): it would cut the value short */
		if (memchr(r->p, '\0', len))
			BAD("column \"%s\" of %s.%s holds a NUL byte", c->name,
			    rel->schema, rel->table);
		memcpy(at, r->p, len);
		at[len] = '\0';
		c->value = at;
		c->value_len = len;
		at += len + 1;
		r->p += len;
	}
	out->columns = d->columns;
	out->ncolumns = n;
	return OBX_OK;
}

/* 'I', 'U', 'D': the row's relation, then its tuple(s). */
static obx_err_t decode_row(pgoutput_t *d, reader_t *r, char kind,
			    size_t msg_len, obx_lsn_t lsn, obx_change_t *out,
			    char *errstr, size_t errstr_size)
{
	uint32_t oid = (uint32_t)get_be(r, 4);
	char tag = (char)get_u8(r);
	if (r->short_read)
		BAD("truncated row message");
	const relation_t *rel = find_relation(d, oid);
	if (!rel)
		BAD("a row of relation %u, which no Relation message described",
		    oid);
	size_t need = msg_len + rel->ncolumns + 1;
	if (need > d->arena_cap) {
		d->arena = obx_xrealloc(d->arena, need);
		d->arena_cap = need;
	}
	if (rel->ncolumns > d->columns_cap) {
		d->columns = obx_xrealloc(d->columns,
					  rel->ncolumns * sizeof(*d->columns));
		d->columns_cap = rel->ncolumns;
	}
	out->kind = kind == 'I'	  ? OBX_CHANGE_INSERT
		    : kind == 'U' ? OBX_CHANGE_UPDATE
				  : OBX_CHANGE_DELETE;
	out->schema = rel->schema;
	out->table = rel->table;
	out->xid = d->xid;
	/* an UPDATE's old key or row comes first; the new row is what we
	 * report (as wal2json's "columns") */
	if (kind == 'U' && (tag == 'K' || tag == 'O')) {
		obx_err_t err = decode_tuple(d, r, rel, false, out, lsn, errstr,
					     errstr_size);
		if (err != OBX_OK)
			return err;
		tag = (char)get_u8(r);
	}
	bool ok = kind == 'D' ? tag == 'K' || tag == 'O' : tag == 'N';
	if (!ok)
		BAD("%c message of %s.%s has tuple tag 0x%02x", kind,
		    rel->schema, rel->table, (unsigned)(unsigned char)tag);
	return decode_tuple(d, r, rel, kind == 'I', out, lsn, errstr,
			    errstr_size);
}

/* 'T': reported as a TRUNCATE of its first relation the cache knows (the
 * publication lists only outbox tables, and any one is an invalid op). */
static obx_err_t decode_truncate(pgoutput_t *d, reader_t *r, obx_lsn_t lsn,
				 obx_change_t *out, char *errstr,
				 size_t errstr_size)
{
	uint32_t n = (uint32_t)get_be(r, 4);
	get_u8(r); /* CASCADE, RESTART IDENTITY */
	if (r->short_read || (size_t)(r->end - r->p) / 4 < n)
		BAD("truncated Truncate message");
	out->xid = d->xid;
	for (uint32_t i = 0; i < n; i++) {
		const relation_t *rel =
		    find_relation(d, (uint32_t)get_be(r, 4));
		if (rel && out->kind == OBX_CHANGE_NONE) {
			out->kind = OBX_CHANGE_TRUNCATE;
			out->schema = rel->schema;
			out->table = rel->table;
		}
	}
	return OBX_OK;
}

static obx_err_t decode_message(pgoutput_t *d, reader_t *r, obx_lsn_t lsn,
				obx_change_t *out, char *errstr,
				size_t errstr_size)
{
	uint8_t flags = get_u8(r);
	obx_lsn_t at = get_be(r, 8);
	size_t prefix_len;
	const char *prefix = get_string(r, &prefix_len);
	size_t len = (size_t)get_be(r, 4);
	if (!has(r, len))
		BAD("truncated Message message");
	obx_message_decode(&d->messages, d->conf, prefix, prefix_len, flags & 1,
			   (const char *)r->p, len, at, out);
	r->p += len;
	out->xid = d->xid;
	return OBX_OK;
}

static obx_err_t pgoutput_decode(void *state, const char *data, size_t len,
				 obx_lsn_t lsn, obx_change_t *out, char *errstr,
				 size_t errstr_size)
{
	pgoutput_t *d = state;
	reader_t r = { (const unsigned char *)data,
		       (const unsigned char *)data + len, false };
	obx_err_t err = OBX_OK;

	memset(out, 0, sizeof(*out));
	out->lsn = lsn;
	char kind = (char)get_u8(&r);
	switch (kind) {
	case 'B':
		get_be(&r, 8); /* the commit record's start */
		out->kind = OBX_CHANGE_BEGIN;
		out->commit_time_us = unix_time_us(get_be(&r, 8));
		d->xid = out->xid = (int64_t)get_be(&r, 4);
		break;
	case 'C':
		get_u8(&r); /* flags, unused */
		get_be(&r, 8);
		out->kind = OBX_CHANGE_COMMIT;
		out->xid = d->xid;
		/* the end of the commit record: what we confirm */
		out->commit_lsn = get_be(&r, 8);
		out->commit_time_us = unix_time_us(get_be(&r, 8));
		break;
	case 'R':
		err = decode_relation(d, &r, lsn, errstr, errstr_size);
		break;
	case 'I':
	case 'U':
	case 'D':
		err =
		    decode_row(d, &r, kind, len, lsn, out, errstr, errstr_size);
		break;
	case 'T':
		err = decode_truncate(d, &r, lsn, out, errstr, errstr_size);
		break;
	case 'M':
		err = decode_message(d, &r, lsn, out, errstr, errstr_size);
		break;
	case 'Y': /* a type: values arrive as text, we never need it */
	case 'O': /* the origin of a replicated transaction */
		return OBX_OK;
	default:
		BAD("unknown message type 0x%02x",
		    (unsigned)(unsigned char)kind);
	}
	if (err == OBX_OK && r.short_read)
		BAD("message '%c' is cut short", kind);
	return err;
}

const obx_decoder_ops_t obx_pgoutput_decoder = {
	.plugin = "pgoutput",
	.create = pgoutput_create,
	.destroy = pgoutput_destroy,
	.start_options = pgoutput_start_options,
	.decode = pgoutput_decode,
};
