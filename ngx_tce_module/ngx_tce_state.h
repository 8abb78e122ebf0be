/*
 * The embedded default store's state file (pure C, no nginx): the
 * registry as one JSON document, validated field by field on the way
 * in, written atomically on the way out.
 *
 *   {
 *     "version": 1,
 *     "services": {
 *       "demo.web.api": {
 *         "clusters": {
 *           "default": {
 *             "canary": { ... },
 *             "instances": [
 *               { "id": "api-1", "address": "127.0.0.1:9001",
 *                 "weight": 5, "env": "prod", "version": "v1",
 *                 "state": "up",
 *                 "override": { "weight": 3, "drain": true,
 *                               "down": false } }
 *             ]
 *           }
 *         }
 *       }
 *     }
 *   }
 *
 * Unknown keys anywhere are an error.  "version", "services",
 * "clusters", "instances", "canary" and every instance key except
 * "id" and "address" may be left out; defaults: weight 1, env prod,
 * version "", state up, no override.
 *
 * The decoder is named ngx_tce_state_decode() (not _parse): the name
 * ngx_tce_state_parse() belongs to the instance state ("up", ...) in
 * ngx_tce_instance.h.
 */

#ifndef _NGX_TCE_STATE_H_INCLUDED_
#define _NGX_TCE_STATE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ngx_tce_types.h"


#define NGX_TCE_STATE_FILE_VERSION    1
#define NGX_TCE_STATE_FILE_MAX_SIZE   (64 * 1024 * 1024)

/* file-wide limits on services, on clusters and on instances, each */
#define NGX_TCE_STATE_FILE_MAX_ITEMS  100000

/* the schema needs 8 levels; the rest is room for the canary object */
#define NGX_TCE_STATE_FILE_MAX_DEPTH  64


typedef struct {
    char                      cluster[NGX_TCE_CLUSTER_LEN];

    /* the cluster's "canary" object as compact JSON, keys sorted
     * (malloc'd), or NULL when the file has none */
    char                     *canary;
} ngx_tce_state_cluster_t;


typedef struct {
    char                      name[NGX_TCE_SERVICE_LEN];

    /* every instance of the service; inst->cluster names its cluster;
     * grouped by cluster in the order of clusters[], file order
     * within a cluster */
    ngx_tce_instance_t       *instances;
    size_t                    ninstances;

    /* every cluster named in the file, even one without instances;
     * sorted by name */
    ngx_tce_state_cluster_t  *clusters;
    size_t                    nclusters;
} ngx_tce_state_service_t;


/* services sorted by name; an empty registry is { NULL, 0 } */
typedef struct {
    ngx_tce_state_service_t  *services;
    size_t                    nservices;
} ngx_tce_state_t;


/*
 * Decodes and validates a state document of len bytes (no NUL needed).
 * Returns 0 and fills *st (its old contents are overwritten, not
 * freed).  Returns -1 and leaves *st empty, with nothing allocated,
 * when the document is bad: err then holds "line L, column C: reason"
 * for a JSON syntax error (or nesting deeper than
 * NGX_TCE_STATE_FILE_MAX_DEPTH), and "path: reason" for a semantic
 * one, e.g. "services.a.b.c.clusters.default.instances[2].weight:
 * must be an integer 1..1000, got 0".  err may be NULL; it is always
 * NUL-terminated, truncated to errlen, and printable ASCII.
 */
int ngx_tce_state_decode(const char *buf, size_t len, ngx_tce_state_t *st,
    char *err, size_t errlen);

/*
 * Reads the file at path (a regular file of at most
 * NGX_TCE_STATE_FILE_MAX_SIZE bytes) and decodes it as above.
 * Returns 0 on success; -2 when the file does not exist (err holds
 * strerror(ENOENT): the caller may take it as an empty registry); -1
 * on any other error.  err does not name the path: the caller adds it.
 * On error *st is left empty.
 */
int ngx_tce_state_load(const char *path, ngx_tce_state_t *st, char *err,
    size_t errlen);

/*
 * Encodes st as a state document: indented by 2, keys sorted, ending
 * in a newline, defaults written explicitly, "override" only for an
 * instance that has one.  ngx_tce_state_decode() of the result gives
 * back an equal registry.  Returns a malloc'd NUL-terminated string
 * (release with free()), or NULL on allocation failure or when a
 * cluster's canary is not a JSON object.
 */
char *ngx_tce_state_encode(const ngx_tce_state_t *st);

/*
 * Replaces the file at path with len bytes of data, atomically: writes
 * "<path>.tmp.<pid>" in the same directory, fsyncs it, renames it over
 * path and fsyncs the directory.  Returns 0, or -1 with err =
 * "step: strerror text"; on a failure before the rename the temp file
 * is removed and path is untouched.  A failure of the final directory
 * fsync returns -1 too, although path then already holds the new data
 * (it may not survive a crash).
 */
int ngx_tce_state_write(const char *path, const char *data, size_t len,
    char *err, size_t errlen);

/*
 * The same, for writers of one path that may run in several processes
 * or threads at once: seq numbers the content (a newer one is larger),
 * *done (shared by the writers) holds the seq of the content in place.
 * The rename happens under an flock() of the directory, and only when
 * *done is not above seq; then *done = seq.  Returns 0 when written, 1
 * when a newer content is already in place (the temp file is removed,
 * path untouched), -1 on error as above.  It blocks: run it off any
 * event loop.
 */
int ngx_tce_state_write_ordered(const char *path, const char *data,
    size_t len, uint64_t seq, volatile uint64_t *done, char *err,
    size_t errlen);

/* frees everything st holds and leaves it empty; safe on an empty st */
void ngx_tce_state_free(ngx_tce_state_t *st);


/*
 * Internal to the state file's files: v as JSON text (json_dumpb flags)
 * in memory from malloc(), with a newline if asked; NULL on error.
 */
char *ngx_tce_state_json_text(const json_t *v, size_t flags, int newline);


#endif /* _NGX_TCE_STATE_H_INCLUDED_ */
