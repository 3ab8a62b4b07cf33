/*
 * main.c - command line of sentinel-proxy: read the configuration (file,
 * then flags, which override it), validate it completely, then run.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "lib/log.h"
#include "proxy/admin.h"
#include "proxy/proxy.h"

struct main_flag {
    const char *key; /* configuration key, or NULL for --set KEY=VALUE */
    const char *value;
};

static void main_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: sentinel-proxy [-c FILE] [-t] [options]\n"
        "\n"
        "A Redis proxy that follows Sentinel: one stable address for the master and\n"
        "replicas of a Sentinel-managed Redis.\n"
        "\n"
        "  -c, --config FILE       read the YAML configuration FILE\n"
        "  -t, --test              check the configuration, print the result, exit 0 or 1\n"
        "      --listen ADDR       listen on HOST:PORT, [IPv6]:PORT, unix:/path or tls://HOST:PORT "
        "(repeatable)\n"
        "      --backend ADDR      a fixed master, for setups without Sentinel\n"
        "      --sentinel ADDR     a Sentinel to ask (repeatable)\n"
        "      --master-name NAME  the master's name in Sentinel\n"
        "      --workers N|auto    worker threads\n"
        "      --read-from MODE    master | replicas | prefer-replicas\n"
        "      --log-level LEVEL   debug | info | warn | error\n"
        "      --set KEY=VALUE     any configuration key (dotted for nested keys)\n"
        "      --help-config       list every configuration key with its default\n"
        "      --healthcheck HOST:PORT[/PATH]\n"
        "                          ask a running proxy's admin endpoint (/healthz by default);\n"
        "                          exit 0 when it answers 200 (container health checks)\n"
        "  -v, --version           print the version\n"
        "  -h, --help              this text\n"
        "\n"
        "Flags override the file. Example:\n"
        "  sentinel-proxy --listen 127.0.0.1:6380 --backend 127.0.0.1:6379\n"
        "  sentinel-proxy --listen 0.0.0.0:6380 --master-name mymaster \\\n"
        "      --sentinel 10.0.0.1:26379 --sentinel 10.0.0.2:26379 --sentinel 10.0.0.3:26379\n");
}

static bool main_apply_flag(struct config *cfg, const struct main_flag *f, char *err, size_t errlen)
{
    char key[128];
    const char *eq;

    if (f->key != NULL) {
        return config_set(cfg, f->key, f->value, err, errlen);
    }
    eq = strchr(f->value, '=');
    if (eq == NULL || eq == f->value || (size_t)(eq - f->value) >= sizeof(key)) {
        snprintf(err, errlen, "--set: expected KEY=VALUE, got '%s'", f->value);
        return false;
    }
    memcpy(key, f->value, (size_t)(eq - f->value));
    key[eq - f->value] = '\0';
    return config_set(cfg, key, eq + 1, err, errlen);
}

/* Everything the configuration is made of: the file, then the flags. */
struct main_source {
    const char *file;
    const struct main_flag *flags;
    int nflags;
};

/* A fresh configuration from the file and the flags, validated; NULL with
 * "FILE:LINE: KEY: problem" or "--FLAG: problem" in err. */
static struct config *main_load(void *ctx, char *err, size_t errlen)
{
    const struct main_source *src = ctx;
    struct config *cfg = config_new();

    if (src->file != NULL && !config_load_file(cfg, src->file, err, errlen)) {
        goto failed;
    }
    for (int i = 0; i < src->nflags; i++) {
        if (!main_apply_flag(cfg, &src->flags[i], err, errlen)) {
            goto failed;
        }
    }
    if (!config_validate(cfg, err, errlen)) {
        goto failed;
    }
    return cfg;
failed:
    config_free(cfg);
    return NULL;
}

int main(int argc, char **argv)
{
    enum {
        OPT_LISTEN = 256,
        OPT_BACKEND,
        OPT_SENTINEL,
        OPT_MASTER,
        OPT_WORKERS,
        OPT_READ,
        OPT_LOG,
        OPT_SET,
        OPT_HELPCFG,
        OPT_HEALTH
    };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"sentinel", required_argument, NULL, OPT_SENTINEL},
        {"master-name", required_argument, NULL, OPT_MASTER},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"read-from", required_argument, NULL, OPT_READ},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"set", required_argument, NULL, OPT_SET},
        {"help-config", no_argument, NULL, OPT_HELPCFG},
        {"healthcheck", required_argument, NULL, OPT_HEALTH},
        {NULL, 0, NULL, 0},
    };
    struct main_flag *flags = calloc((size_t)argc + 1, sizeof(*flags));
    char err[CONFIG_ERR_MAX];
    const char *file = NULL;
    struct config *cfg;
    bool test = false;
    int nflags = 0, opt, rc;

    if (flags == NULL) {
        return 1;
    }
    while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        const char *key = NULL;
        switch (opt) {
        case 'c':
            file = optarg;
            continue;
        case 't':
            test = true;
            continue;
        case 'v':
            printf("sentinel-proxy %s\n", PROXY_VERSION);
            free(flags);
            return 0;
        case 'h':
            main_usage(stdout);
            free(flags);
            return 0;
        case OPT_HELPCFG:
            config_print_reference(stdout);
            free(flags);
            return 0;
        case OPT_HEALTH: {
            char out[600];
            bool ok = admin_probe(optarg, 3000, out, sizeof(out));
            printf("%s\n", out);
            free(flags);
            return ok ? 0 : 1;
        }
        case OPT_LISTEN:
            key = "listen";
            break;
        case OPT_BACKEND:
            key = "backend";
            break;
        case OPT_SENTINEL:
            key = "sentinel.addresses";
            break;
        case OPT_MASTER:
            key = "sentinel.master-name";
            break;
        case OPT_WORKERS:
            key = "workers";
            break;
        case OPT_READ:
            key = "read-from";
            break;
        case OPT_LOG:
            key = "log-level";
            break;
        case OPT_SET:
            key = NULL;
            break;
        default:
            main_usage(stderr);
            free(flags);
            return 1;
        }
        flags[nflags].key = key;
        flags[nflags].value = optarg;
        nflags++;
    }
    if (optind < argc) {
        fprintf(stderr, "sentinel-proxy: unexpected argument '%s' (see --help)\n", argv[optind]);
        free(flags);
        return 1;
    }
    struct main_source src = {file, flags, nflags};
    struct proxy_source psrc = {main_load, &src, file != NULL ? file : "(flags only)"};
    rc = 1;
    cfg = main_load(&src, err, sizeof(err));
    if (cfg == NULL) {
        goto failed;
    }
    if (test) {
        struct proxy_tls tls;
        /* The files are part of the configuration: they must load. */
        if (!proxy_tls_open(cfg, &tls, err, sizeof(err))) {
            goto failed;
        }
        proxy_tls_close(&tls);
        printf("configuration %s is valid\n", file != NULL ? file : "(flags only)");
        rc = 0;
        goto out;
    }
    log_set_level(cfg->log_level);
    log_set_json(cfg->log_format == 1);
    rc = proxy_run(cfg, &psrc); /* takes cfg */
    free(flags);
    return rc;
failed:
    fprintf(stderr, "sentinel-proxy: %s\n", err);
out:
    config_free(cfg);
    free(flags);
    return rc;
}
