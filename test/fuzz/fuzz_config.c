/*
 * fuzz_config.c - libFuzzer harness for the configuration loader
 * (conf/config.c, conf/yamltree.c).
 *
 * The input is a YAML file: it is loaded with config_load_string and, when
 * accepted, checked with config_validate; config_free must then release
 * everything (LeakSanitizer) whatever happened. A first line of the form
 * "#--KEY=VALUE" (a YAML comment) is also applied with config_set after the
 * load, so that the flag path sees hostile values too.
 *
 * Beyond "no crash, no leak", messages are checked: every load error names
 * the file, and no message carries a control character (values are masked
 * before they are quoted, so a hostile file cannot forge log lines). An
 * accepted configuration must satisfy what config_validate promises.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_check_message(const char *err)
{
    for (const unsigned char *p = (const unsigned char *)err; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            fprintf(stderr, "control character in message: %s\n", err);
            abort();
        }
    }
}

/* Apply "#--KEY=VALUE" from the first line, if there is one. */
static void fz_apply_flag(struct config *cfg, const char *text, size_t size)
{
    const char *nl = memchr(text, '\n', size), *eq;
    char line[256], err[CONFIG_ERR_MAX];
    size_t n = nl != NULL ? (size_t)(nl - text) : size;

    if (n < 4 || n >= sizeof(line) || memcmp(text, "#--", 3) != 0) {
        return;
    }
    memcpy(line, text + 3, n - 3);
    line[n - 3] = '\0';
    eq = strchr(line, '=');
    if (eq == NULL || strlen(line) != n - 3) {
        return;
    }
    line[eq - line] = '\0';
    if (!config_set(cfg, line, line + (eq - line) + 1, err, sizeof(err))) {
        if (strncmp(err, "--", 2) != 0) {
            fprintf(stderr, "flag message without --KEY: %s\n", err);
            abort();
        }
        fz_check_message(err);
    }
}

static void fz_check_valid(const struct config *cfg)
{
    if (cfg->nlisteners == 0 || cfg->has_backend == cfg->has_sentinel ||
        cfg->reconnect_min_ms > cfg->reconnect_max_ms ||
        (cfg->has_sentinel && cfg->nsentinels == 0)) {
        fprintf(stderr, "config_validate accepted an invalid configuration\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = config_new();
    const char *text = (const char *)data;
    char err[CONFIG_ERR_MAX];

    if (!config_load_string(cfg, text, size, "fuzz.yaml", err, sizeof(err))) {
        if (strncmp(err, "fuzz.yaml:", 10) != 0) {
            fprintf(stderr, "load error without the file name: %s\n", err);
            abort();
        }
        fz_check_message(err);
        config_free(cfg);
        return 0;
    }
    fz_apply_flag(cfg, text, size);
    if (config_validate(cfg, err, sizeof(err))) {
        fz_check_valid(cfg);
    } else {
        fz_check_message(err);
    }
    config_free(cfg);
    return 0;
}
