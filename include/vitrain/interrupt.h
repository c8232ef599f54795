/*
 * interrupt.h - SIGINT/SIGTERM as a request to stop cleanly.
 *
 * The handlers only set a flag; the training loop reads it between steps,
 * finishes the step in progress, writes checkpoint-last and returns
 * VT_ERR_INTERRUPTED. A second signal while that happens is not fatal
 * either: the checkpoint write is atomic, and the flag is simply set again.
 */
#ifndef VITRAIN_INTERRUPT_H
#define VITRAIN_INTERRUPT_H

#include <stdbool.h>

/* Installs the handlers (idempotent) and clears any earlier request. */
void interrupt_install(void);
/* Restores the default handlers. */
void interrupt_uninstall(void);
/* True once SIGINT or SIGTERM arrived since interrupt_install. */
bool interrupt_requested(void);
/* The signal that asked to stop, 0 if none. */
int interrupt_signal(void);

/* Ignores SIGXFSZ, so that a file-size limit (ulimit -f) fails the write
 * with EFBIG, reported like a full disk (status 4, naming the file), rather
 * than killing the process mid-write. main calls it first. */
void file_limit_fails_writes(void);

#endif
