/* herald simulate: replay a traffic file through the config's limits on
 * virtual time (src/sim/), before the config is reloaded into a running
 * engine. Exit 0 done, 1 a runtime failure (gnuplot missing or failing),
 * 2 usage, config or traffic errors. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "herald/core.h"
#include "herald/sim.h"

extern char **environ;

static const char simulate_usage[] =
    "usage: herald simulate -c FILE --traffic FILE [--json] [--plot FILE.png] [--seed N]\n"
    "                       [--stop-after DURATION] [--workers N]\n"
    "\n"
    "Replay traffic through the config's limits on virtual time: egress IPs\n"
    "round robin over each tenant's pool, throttle pairs per egress IP x\n"
    "provider (rate, connections, reputation back-off), the shaping decision,\n"
    "fair share by tenant x priority, the retry schedule and max_age. No mail\n"
    "is sent and no Redis is used; a day of traffic takes seconds.\n"
    "\n"
    "The traffic file is JSON Lines ('#' lines and blank lines are skipped):\n"
    "  jobs:  {\"t\": 0, \"tenant\": \"acme\", \"domain\": \"gmail.com\",\n"
    "          \"priority\": \"normal\", \"count\": 1000, \"over\": 60, \"expires\": 3600}\n"
    "         count jobs (default 1) enqueued evenly over `over` seconds from t;\n"
    "         priority high|normal|bulk (default normal); expires: seconds\n"
    "         after enqueue (optional)\n"
    "  site:  {\"site\": \"gmail.com\", \"mx\": [\"gmail-smtp-in.l.google.com\"],\n"
    "          \"domains\": [\"googlemail.com\"], \"limit_per_s\": 20,\n"
    "          \"limit_scope\": \"site\", \"tempfail\": 0.02, \"bounce\": 0,\n"
    "          \"latency_ms\": 80, \"reply\": \"421 4.7.0 Try again later\",\n"
    "          \"tempfail_reply\": \"451 ...\", \"bounce_reply\": \"550 ...\"}\n"
    "         how the receiver answers: above limit_per_s (per second, for the\n"
    "         site or per egress IP) `reply`; a share `tempfail` of random 4xx\n"
    "         and `bounce` of 5xx; each message holds a connection latency_ms.\n"
    "         The first mx host picks the provider as the config's mx patterns\n"
    "         do (default: the site name). \"site\": \"*\" sets the behaviour of\n"
    "         domains without a site line (default: no limit, 100 ms).\n"
    "\n"
    "options:\n"
    "  -c, --config FILE     the config to try\n"
    "  -t, --traffic FILE    the traffic (JSON Lines; - for stdin)\n"
    "      --json            one JSON document instead of the tables\n"
    "      --plot FILE.png   draw delivered rate and queue depth per site (gnuplot)\n"
    "      --seed N          receiver randomness and retry jitter (default 1)\n"
    "      --stop-after D    stop after this much virtual time (default 30d)\n"
    "      --workers N       engine workers to model (default: the config's engine.workers)\n"
    "\n"
    "Per site, egress IP and tenant it prints jobs, delivered, the steady rate\n"
    "(the middle 80%% of the time between first and last delivery) and the\n"
    "best 10 s, deferrals (4xx) and throttle signals among them, bounces,\n"
    "expiries (max_age or expires), enqueue-to-delivery p50/p99, and the\n"
    "shaping decision's waits (in memory) and parks (to the retry set) by\n"
    "reason; per egress IP x provider the lowest and final reputation factor.\n"
    "Exit status: 0 done, 1 runtime failure, 2 usage, config or traffic error.\n";

/* The directory in PATH holding an executable `name`, or false. */
static bool in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        char full[PATH_MAX];
        if (n > 0 &&
            (size_t)snprintf(full, sizeof full, "%.*s/%s", (int)n, path, name) < sizeof full &&
            access(full, X_OK) == 0)
            return true;
        path += n;
        if (*path == ':') path++;
    }
    return false;
}

static int plot(const struct sim_result *r, const char *png)
{
    char dir[] = "/tmp/herald-sim-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "herald simulate: cannot make a temporary directory: %s\n",
                strerror(errno));
        return 1;
    }
    char data[64], script[64];
    snprintf(data, sizeof data, "%s/rate.dat", dir);
    snprintf(script, sizeof script, "%s/plot.gp", dir);
    int rc = sim_report_plot_files(r, data, script, png);
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "herald simulate: writing the plot files: %s\n", herald_strerror(rc));
    } else {
        char *argv[] = {(char *)"gnuplot", script, NULL};
        pid_t pid;
        rc = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
        if (rc != 0) {
            fprintf(stderr, "herald simulate: cannot run gnuplot: %s\n", strerror(rc));
            rc = -rc;
        } else if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "herald simulate: gnuplot failed drawing %s\n", png);
            rc = -1;
        }
    }
    unlink(data);
    unlink(script);
    rmdir(dir);
    return rc < 0 ? 1 : 0;
}

int cli_simulate(int argc, char **argv)
{
    enum { OPT_JSON = 256, OPT_PLOT, OPT_SEED, OPT_STOP, OPT_WORKERS };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"traffic", required_argument, NULL, 't'},
        {"json", no_argument, NULL, OPT_JSON},
        {"plot", required_argument, NULL, OPT_PLOT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"stop-after", required_argument, NULL, OPT_STOP},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cfg_path = NULL, *traffic_path = NULL, *png = NULL;
    bool json = false;
    struct sim_options o = {.seed = 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cfg_path = optarg;
            break;
        case 't':
            traffic_path = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_PLOT:
            png = optarg;
            break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end) {
                fprintf(stderr, "herald simulate: --seed wants a number, not '%s'\n", optarg);
                return 2;
            }
            o.seed = v;
            break;
        }
        case OPT_WORKERS: {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 1024) {
                fprintf(stderr, "herald simulate: --workers wants 1 to 1024, not '%s'\n", optarg);
                return 2;
            }
            o.workers = (uint32_t)v;
            break;
        }
        case OPT_STOP:
            if (config_parse_duration(optarg, &o.max_ms) < 0 || o.max_ms <= 0) {
                fprintf(stderr, "herald simulate: --stop-after wants a duration (30s, 2h, 3d)\n");
                return 2;
            }
            break;
        case 'h':
            fputs(simulate_usage, stdout);
            return 0;
        default:
            fputs(simulate_usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "herald simulate: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!traffic_path) {
        fprintf(stderr, "herald simulate: --traffic FILE is required (see --help)\n");
        return 2;
    }
    if (png && !in_path("gnuplot")) {
        fprintf(stderr, "herald simulate: --plot needs gnuplot, which is not installed "
                        "(Debian: apt-get install gnuplot-nox)\n");
        return 1;
    }
    /* The back-off's warnings carry the real clock: noise here. */
    log_min_level = LOG_ERROR;
    struct config *cfg = NULL;
    int rc = cli_load_config(cfg_path, &cfg);
    if (rc) return rc;
    FILE *f = strcmp(traffic_path, "-") == 0 ? stdin : fopen(traffic_path, "r");
    if (!f) {
        fprintf(stderr, "herald simulate: %s: %s\n", traffic_path, strerror(errno));
        config_free(cfg);
        return 2;
    }
    struct sim_traffic t;
    sim_traffic_init(&t);
    char err[512];
    rc = sim_traffic_read(&t, f, traffic_path, err, sizeof err);
    if (f != stdin) fclose(f);
    if (rc == 0 && t.total == 0) {
        snprintf(err, sizeof err, "%s: no jobs in the traffic", traffic_path);
        rc = -HERR_MALFORMED;
    }
    struct sim_result *r = NULL;
    if (rc == 0) {
        /* Warm-up caps are per UTC day: the run starts now. */
        o.start_wall_ms = (int64_t)time(NULL) * 1000;
        char why[400];
        rc = sim_run(cfg, &t, &o, &r, why, sizeof why);
        if (rc == -HERR_CONFIG)
            snprintf(err, sizeof err, "%s:%s", traffic_path,
                     why + (strncmp(why, "line ", 5) == 0 ? 5 : 0));
        else if (rc < 0)
            snprintf(err, sizeof err, "herald simulate: %s", why);
    }
    int exit_code = 0;
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        exit_code = rc == -ENOMEM ? 1 : 2;
    } else {
        if (json ? sim_report_json(r, stdout) < 0 : (sim_report_text(r, stdout), false))
            exit_code = 1;
        if (png && plot(r, png) != 0) exit_code = 1;
    }
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
    return exit_code;
}
