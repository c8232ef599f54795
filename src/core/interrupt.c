/*
 * interrupt.c - SIGINT/SIGTERM set a flag the training loop polls (see
 * interrupt.h). Only async-signal-safe work happens in the handler.
 */
#include "vitrain/interrupt.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t requested_signal;

static void on_signal(int sig)
{
    requested_signal = sig;
}

static void set_handler(int sig, void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* blocking reads and writes carry on */
    sigaction(sig, &sa, NULL);
}

void interrupt_install(void)
{
    requested_signal = 0;
    set_handler(SIGINT, on_signal);
    set_handler(SIGTERM, on_signal);
}

void interrupt_uninstall(void)
{
    set_handler(SIGINT, SIG_DFL);
    set_handler(SIGTERM, SIG_DFL);
}

bool interrupt_requested(void)
{
    return requested_signal != 0;
}

int interrupt_signal(void)
{
    return requested_signal;
}

void file_limit_fails_writes(void)
{
    set_handler(SIGXFSZ, SIG_IGN);
}
