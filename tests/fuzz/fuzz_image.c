/*
 * fuzz_image.c - libFuzzer harness for the image decode path of
 * dataset_open: the bytes become root/train/a/x.png and root/val/a/x.png,
 * opened with channels 1 and 3 under BAD_IMAGE_SKIP and BAD_IMAGE_ERROR
 * (memory cache, side 8). Any bytes: OK or an error, no crash, no leak.
 */
#include "fuzz_common.h"

#include "vitrain/data.h"

#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[300], train_file[340], val_file[340];

static void setup(void)
{
    const char *dir = fuzz_tmpdir();
    snprintf(root, sizeof root, "%s/root", dir);
    char p[340];
    const char *made[] = {"", "/train", "/train/a", "/val", "/val/a"};
    for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
        snprintf(p, sizeof p, "%s%s", root, made[i]);
        if (mkdir(p, 0700) != 0) {
            perror(p);
            abort();
        }
    }
    snprintf(train_file, sizeof train_file, "%s/train/a/x.png", root);
    snprintf(val_file, sizeof val_file, "%s/val/a/x.png", root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0])
        setup();
    fuzz_write_file(train_file, data, size);
    fuzz_write_file(val_file, data, size);

    static const int channels[] = {1, 3};
    static const BadImagePolicy policies[] = {BAD_IMAGE_SKIP, BAD_IMAGE_ERROR};
    for (int c = 0; c < 2; c++) {
        for (int p = 0; p < 2; p++) {
            DatasetOptions o = {.channels = channels[c], .cache_side = 8,
                                .on_bad_image = policies[p], .cache = CACHE_MEMORY,
                                .cache_dir = NULL, .progress = false};
            Dataset train, val;
            VtError err = {0};
            VtCode code = dataset_open(&train, root, "train", &o, NULL, &err);
            if (code != VT_OK) {
                if (err.message[0] == '\0')
                    abort();
                continue;
            }
            for (int i = 0; i < train.count; i++) {
                if (train.height[i] < 8 || train.width[i] < 8 ||
                    (train.height[i] != 8 && train.width[i] != 8))
                    abort();
            }
            VtError verr = {0};
            if (dataset_open(&val, root, "val", &o, &train, &verr) == VT_OK)
                dataset_close(&val);
            dataset_close(&train);
        }
    }
    return 0;
}
