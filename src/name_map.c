/* name_map.c - see include/outboxd/name_map.h */
#include "outboxd/name_map.h"

#include <stdlib.h>
#include <string.h>

#include "outboxd/common.h"

typedef struct {
	char *name; /* NULL: a free slot */
	uint64_t hash;
	void *value;
} entry_t;

/* Open addressing with linear probing, at most half full. */
struct obx_name_map {
	entry_t *entries;
	size_t cap; /* a power of two, or 0 */
	size_t count;
};

obx_name_map_t *obx_name_map_new(void)
{
	return obx_xcalloc(1, sizeof(obx_name_map_t));
}

void obx_name_map_destroy(obx_name_map_t *m, void (*free_value)(void *))
{
	if (!m)
		return;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->entries[i].name)
			continue;
		free(m->entries[i].name);
		if (free_value)
			free_value(m->entries[i].value);
	}
	free(m->entries);
	free(m);
}

static entry_t *find(entry_t *entries, size_t cap, const char *name,
		     uint64_t hash)
{
	for (size_t i = hash & (cap - 1);; i = (i + 1) & (cap - 1))
		if (!entries[i].name || (entries[i].hash == hash &&
					 strcmp(entries[i].name, name) == 0))
			return &entries[i];
}

void *obx_name_map_get(const obx_name_map_t *m, const char *name)
{
	if (!m->cap)
		return NULL;
	entry_t *e = find(m->entries, m->cap, name, obx_hash_str(name));
	return e->name ? e->value : NULL;
}

void obx_name_map_put(obx_name_map_t *m, const char *name, void *value)
{
	if ((m->count + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		entry_t *entries = obx_xcalloc(cap, sizeof(*entries));
		for (size_t i = 0; i < m->cap; i++)
			if (m->entries[i].name)
				*find(entries, cap, m->entries[i].name,
				      m->entries[i].hash) = m->entries[i];
		free(m->entries);
		m->entries = entries;
		m->cap = cap;
	}
	uint64_t hash = obx_hash_str(name);
	entry_t *e = find(m->entries, m->cap, name, hash);
	if (!e->name) {
		e->name = obx_xstrdup(name);
		e->hash = hash;
		m->count++;
	}
	e->value = value;
}
