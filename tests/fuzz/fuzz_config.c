/*
 * fuzz_config.c - libFuzzer harness for the INI config parser.
 *
 * Any text: config_parse over the defaults must return OK or an error with
 * a message, never crash. When it parses and validates, config_to_string
 * must parse back (over the defaults) to the same RunConfig.
 */
#include "vitrain/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    RunConfig cfg;
    config_defaults(&cfg);
    VtError err = {0};
    if (config_parse(&cfg, text, "fuzz", &err) == VT_OK) {
        VtError verr = {0};
        if (config_validate(&cfg, &verr) == VT_OK) {
            char *out = config_to_string(&cfg);
            RunConfig back;
            config_defaults(&back);
            VtError rerr = {0};
            if (config_parse(&back, out, "round-trip", &rerr) != VT_OK) {
                fprintf(stderr, "round trip failed: %s\n--- text ---\n%s\n", rerr.message, out);
                abort();
            }
            if (config_validate(&back, &rerr) != VT_OK) {
                fprintf(stderr, "round trip does not validate: %s\n", rerr.message);
                abort();
            }
            char *again = config_to_string(&back);
            if (strcmp(out, again) != 0) {
                fprintf(stderr, "round trip changed the config:\n--- first ---\n%s\n--- second ---\n%s\n",
                        out, again);
                abort();
            }
            free(again);
            free(out);
        } else if (verr.message[0] == '\0') {
            abort();
        }
    } else if (err.message[0] == '\0') {
        fprintf(stderr, "config_parse failed without a message\n");
        abort();
    }
    free(text);
    return 0;
}
