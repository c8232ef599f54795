/*
 * fuzz_checkpoint.c - libFuzzer harness for the checkpoint reader: the
 * bytes as a checkpoint file, read by checkpoint_read_config and
 * checkpoint_load (with and without the moments) against a small fixed
 * TensorList. Any bytes: OK or an error with a message, no crash, no leak.
 * Each input is tried twice: as given, and with the size field and the
 * CRC-32 made consistent, so that mutations reach the checks after the
 * checksum.
 */
#include "fuzz_common.h"
#include "fuzz_tensors.h"

#include "vitrain/checkpoint.h"

#include "../../src/io/binfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[300];
static TensorList list;
static float *params, *m, *v;

static void load_file(void);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/ckpt.bin", fuzz_tmpdir());
        fuzz_tensor_list(&list);
        params = calloc(list.total, sizeof *params);
        m = calloc(list.total, sizeof *m);
        v = calloc(list.total, sizeof *v);
        if (!params || !m || !v)
            abort();
    }
    fuzz_write_file(path, data, size);
    load_file();

    /* Offsets from the layout in src/io/checkpoint.c: u64 file size at 16,
     * the CRC-32 of every byte before it in the last 4. */
    if (size >= 76) {
        unsigned char *fixed = malloc(size);
        if (!fixed)
            abort();
        memcpy(fixed, data, size);
        le_put_u64(fixed + 16, (uint64_t)size);
        le_put_u32(fixed + size - 4, crc32_update(0, fixed, size - 4));
        fuzz_write_file(path, fixed, size);
        free(fixed);
        load_file();
    }
    return 0;
}

static void load_file(void)
{
    char *config = NULL;
    VtError err = {0};
    if (checkpoint_read_config(path, &config, &err) == VT_OK) {
        if (!config)
            abort();
        free(config);
    } else if (err.message[0] == '\0') {
        abort();
    }

    for (int moments = 0; moments < 2; moments++) {
        CheckpointState st = {0};
        VtError lerr = {0};
        if (checkpoint_load(path, &st, &list, params, moments ? m : NULL, moments ? v : NULL,
                            &lerr) == VT_OK) {
            if (!st.config)
                abort();
            free((char *)st.config);
        } else if (lerr.message[0] == '\0') {
            abort();
        }
    }
}
