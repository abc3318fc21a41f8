/*
 * name_map.h - a map from a name (a topic, a subject) to a pointer, for the
 * per-topic tables on the hot path (producer.c, registry.c): finding a name
 * costs one hash and, almost always, one string comparison.
 *
 * Ownership: the map copies and owns the names; the values are the
 * caller's, handed to free_value (when given) by obx_name_map_destroy().
 * Single-threaded.
 */
#ifndef OUTBOXD_NAME_MAP_H
#define OUTBOXD_NAME_MAP_H

typedef struct obx_name_map obx_name_map_t;

obx_name_map_t *obx_name_map_new(void);
void obx_name_map_destroy(obx_name_map_t *m, void (*free_value)(void *));

/* The value of `name`, or NULL when the map does not have it. */
void *obx_name_map_get(const obx_name_map_t *m, const char *name);

/* Sets the value of `name`, adding the name when it is new. */
void obx_name_map_put(obx_name_map_t *m, const char *name, void *value);

#endif
