/*
 * fuzz_safetensors.c - libFuzzer harness for safetensors_load: the bytes
 * as a .safetensors file, loaded against a small fixed TensorList with and
 * without config_text. Any bytes: OK or an error with a message, no crash,
 * no leak.
 */
#include "fuzz_common.h"
#include "fuzz_tensors.h"

#include "vitrain/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[300];
static TensorList list;
static float *params;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/model.safetensors", fuzz_tmpdir());
        fuzz_tensor_list(&list);
        params = calloc(list.total, sizeof *params);
        if (!params)
            abort();
    }
    fuzz_write_file(path, data, size);

    for (int want_config = 0; want_config < 2; want_config++) {
        char *config = (char *)0x1;  /* must be overwritten on success */
        VtError err = {0};
        VtCode code = safetensors_load(path, &list, params, want_config ? &config : NULL, &err);
        if (code == VT_OK) {
            if (want_config) {
                if (config == (char *)0x1)
                    abort();
                free(config);
            }
        } else if (err.message[0] == '\0') {
            abort();
        }
    }
    return 0;
}
