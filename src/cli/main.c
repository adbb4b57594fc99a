/* herald: command-line front door. Exit codes: 0 ok, 1 runtime failure,
 * 2 usage or configuration error. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "herald/core.h"
#include "herald/service.h"
#include "herald/version.h"

static const char usage[] =
    "usage: herald COMMAND [OPTIONS]\n"
    "\n"
    "Bulk notification sender: jobs from a Redis Stream, delivered over SMTP,\n"
    "every outcome written back as a case note.\n"
    "\n"
    "commands:\n"
    "  run -c FILE             run the engine (SIGTERM drains and exits)\n"
    "  check-config -c FILE    validate the config and print the effective settings\n"
    "  enqueue -c FILE ...     add jobs (flags, or JSON Lines on stdin)\n"
    "  queue ACTION ...        list, show, retry, hold, release, bounce or cancel waiting jobs\n"
    "  suspend | resume ...    stop or restart sending for a tenant, provider, site, IP or domain\n"
    "  cancel --tenant T --id ID [--wait SECS]\n"
    "                          cancel a job by its id (a control entry)\n"
    "  events -c FILE ...      read case notes (--follow, --tenant, --json)\n"
    "  suppress ACTION ...     list, add or remove suppressed recipients\n"
    "  smtp-test -c FILE ...   try a tenant's relay or a domain's MX step by step\n"
    "  status -c FILE          limits, reputation, rates and queues of the running engines\n"
    "  stats -c FILE --tenant T [--month YYYY-MM]\n"
    "                          a tenant's outcomes per day and recipient domain\n"
    "  check-domain DOMAIN -c FILE [--tenant T] [--json]\n"
    "                          SPF, DKIM, DMARC, MX, PTR and DNSBL checks with fixes\n"
    "  simulate -c FILE --traffic FILE [--plot FILE.png] [--json]\n"
    "                          replay traffic through the config's limits on virtual time\n"
    "\n"
    "Without -c, commands read $HERALD_CONFIG, else /etc/herald/herald.yaml.\n"
    "Run 'herald COMMAND --help' for a command's options; 'herald --version'.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("herald %s (commit %s)\n", HERALD_VERSION, HERALD_COMMIT);
        return 0;
    }
    log_journal_prefix = service_stderr_is_journal();
    if (strcmp(cmd, "run") == 0)
        return cli_run(argc - 1, argv + 1);
    if (strcmp(cmd, "check-config") == 0)
        return cli_check_config(argc - 1, argv + 1);
    if (strcmp(cmd, "enqueue") == 0)
        return cli_enqueue(argc - 1, argv + 1);
    if (strcmp(cmd, "events") == 0)
        return cli_events(argc - 1, argv + 1);
    if (strcmp(cmd, "suppress") == 0)
        return cli_suppress(argc - 1, argv + 1);
    if (strcmp(cmd, "smtp-test") == 0)
        return cli_smtp_test(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cli_status(argc - 1, argv + 1);
    if (strcmp(cmd, "stats") == 0)
        return cli_stats(argc - 1, argv + 1);
    if (strcmp(cmd, "check-domain") == 0)
        return cli_check_domain(argc - 1, argv + 1);
    if (strcmp(cmd, "simulate") == 0)
        return cli_simulate(argc - 1, argv + 1);
    if (strcmp(cmd, "cancel") == 0)
        return cli_cancel(argc - 1, argv + 1);
    if (strcmp(cmd, "queue") == 0)
        return cli_queue(argc - 1, argv + 1);
    if (strcmp(cmd, "suspend") == 0)
        return cli_suspend(argc - 1, argv + 1);
    if (strcmp(cmd, "resume") == 0)
        return cli_resume(argc - 1, argv + 1);
    fprintf(stderr, "herald: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}
