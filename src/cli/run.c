#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "herald/core.h"
#include "herald/engine.h"

static const char run_usage[] =
    "usage: herald run -c FILE [--log-level trace|debug|info|warn|error]\n"
    "\n"
    "Runs the engine: reads jobs from the configured stream with a consumer\n"
    "group, delivers them, and writes one terminal case note per job.\n"
    "SIGTERM or SIGINT: stop taking jobs, finish in-flight ones within\n"
    "engine.shutdown_grace, hand back the rest, exit 0.\n";

static const char check_usage[] =
    "usage: herald check-config -c FILE\n"
    "\n"
    "Validates FILE. Prints the effective settings and exits 0, or prints\n"
    "'file:line:col: message' and exits 2.\n";

static int parse_level(const char *s)
{
    static const char *const names[] = {"trace", "debug", "info", "warn", "error"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int cli_run(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct engine_opts eo = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            eo.config_path = optarg;
            break;
        case 'l': {
            int lvl = parse_level(optarg);
            if (lvl < 0) {
                fprintf(stderr, "herald run: unknown log level '%s'\n", optarg);
                return 2;
            }
            log_min_level = (enum log_level)lvl;
            break;
        }
        case 'h':
            fputs(run_usage, stdout);
            return 0;
        default:
            fputs(run_usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fputs(run_usage, stderr);
        return 2;
    }
    eo.config_path = cli_config_path(eo.config_path);
    return engine_run(&eo);
}

int cli_check_config(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            fputs(check_usage, stdout);
            return 0;
        default:
            fputs(check_usage, stderr);
            return 2;
        }
    }
    if (!path && optind < argc)
        path = argv[optind];
    struct config *cfg = NULL;
    path = cli_config_path(path);
    int rc = cli_load_config(path, &cfg);
    if (rc)
        return rc;
    config_print_effective(cfg, stdout);
    printf("config ok: %s\n", path);
    config_free(cfg);
    return 0;
}
