//! `gitlab-for-jira`: exit 0 on success, 1 on a run-time failure (one line on stderr), 2 on bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gfj_store::{Clock, SystemClock};
use gitlab_for_jira::Settings;
use gitlab_for_jira::commands::{demo, doctor, jsm, link, resync, serve, sites, status, wait};

#[derive(Parser)]
#[command(
    name = "gitlab-for-jira",
    version,
    about = "GitLab activity in the Jira Cloud development panel"
)]
struct Cli {
    /// TOML file with settings (keys as in the environment, e.g. GFJ_BASE_URL or base_url); the environment wins.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service and the workers until SIGTERM/SIGINT.
    Serve,
    /// Link a GitLab group or subgroup to a Jira site.
    #[command(group(clap::ArgGroup::new("gitlab_credentials").required(true).multiple(false)))]
    Link {
        /// The Jira site: a Connect clientKey or a Jira base URL.
        #[arg(long)]
        site: String,
        /// Full path of the group or subgroup.
        #[arg(long)]
        group: String,
        #[arg(long)]
        gitlab_url: String,
        /// A personal, group or project access token (Maintainer or higher on the group). Prefer the
        /// environment (GFJ_GITLAB_TOKEN) or --gitlab-token-file: other users of the machine can read
        /// command lines.
        #[arg(
            long,
            env = "GFJ_GITLAB_TOKEN",
            hide_env_values = true,
            group = "gitlab_credentials"
        )]
        gitlab_token: Option<String>,
        /// A file holding the GitLab token (surrounding whitespace is ignored).
        #[arg(long, group = "gitlab_credentials")]
        gitlab_token_file: Option<PathBuf>,
        /// Act as a GitLab user who signed in through the admin page (the connection id it showed).
        #[arg(long, group = "gitlab_credentials")]
        gitlab_connection: Option<i64>,
        #[arg(long, value_enum, default_value = "auto")]
        hook_mode: link::HookMode,
        /// Follow the backfill until it is done (progress on stderr); exit 1 with the reasons when tasks fail.
        #[arg(long)]
        wait: bool,
    },
    /// Remove a link and the webhooks it registered.
    Unlink {
        #[arg(long)]
        site: String,
        #[arg(long)]
        group: String,
    },
    /// Jira sites.
    Sites {
        #[command(subcommand)]
        command: SitesCommand,
    },
    /// Sites, subscriptions and the queue.
    Status {
        #[arg(long)]
        json: bool,
        /// Why is (or isn't) this issue key in Jira: what was sent under it, and Jira's verdicts.
        #[arg(long)]
        issue: Option<String>,
    },
    /// Backfill a linked group again: all of it, one project, from a date, or only what failed.
    Resync {
        /// The Jira site: a Connect clientKey or a Jira base URL.
        #[arg(long)]
        site: String,
        /// Full path of the linked group or subgroup.
        #[arg(long)]
        group: String,
        /// Full path of one project of the group.
        #[arg(long)]
        project: Option<String>,
        /// Read history from this day (YYYY-MM-DD, UTC) instead of the configured window.
        #[arg(long)]
        since: Option<String>,
        /// Only the tasks that failed.
        #[arg(long)]
        failed: bool,
        /// Follow the backfill until it is done (progress on stderr); exit 1 with the reasons when tasks fail.
        #[arg(long)]
        wait: bool,
    },
    /// Jira Service Management: service IDs on deployments, per project or as a group's defaults.
    Jsm {
        #[command(subcommand)]
        command: JsmCommand,
    },
    /// Run against the built-in GitLab and Jira simulators and print what Jira shows per issue key.
    Demo {
        /// Keep running, and serve the simulated Jira's development panel at a local URL (printed).
        #[arg(long)]
        serve: bool,
    },
    /// Check the whole installation (settings, database, key, Jira sites, GitLab access and hooks,
    /// GFJ_BASE_URL): one line per check with the fix; exit 1 when any fails.
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

/// A project, or a group whose projects inherit (the linked group or a subgroup of it).
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct JsmTarget {
    /// Full path of a project of a linked group.
    #[arg(long)]
    project: Option<String>,
    /// Full path of a linked group or of a subgroup of it: defaults its projects inherit unless they set
    /// their own.
    #[arg(long)]
    group: Option<String>,
}

impl JsmTarget {
    fn target(self) -> jsm::Target {
        match (self.project, self.group) {
            (Some(project), _) => jsm::Target::Project(project),
            (None, group) => jsm::Target::Group(group.unwrap_or_default()),
        }
    }
}

#[derive(Subcommand)]
enum JsmCommand {
    /// Set JSM settings of a project or group; what is not given stays as it was.
    Set {
        #[command(flatten)]
        target: JsmTarget,
        /// The Jira site (clientKey or base URL), when the path is linked to several.
        #[arg(long)]
        site: Option<String>,
        /// Comma-separated JSM service IDs (at most 100) that every deployment carries; "" for none.
        #[arg(long)]
        service_ids: Option<String>,
        /// Comma-separated environment tiers (production, staging, testing, development) whose blocked
        /// deployments wait for a JSM change request; "" turns gating off.
        #[arg(long)]
        gating_tiers: Option<String>,
        /// A file holding the GitLab token (a service account or bot that may approve deployments in the
        /// projects) that approves, rejects and plays gated deployments.
        #[arg(long)]
        gating_token_file: Option<PathBuf>,
        /// Whether an approved deployment's manual job is started (approval alone does not start it).
        #[arg(long)]
        play_after_approval: Option<bool>,
    },
    /// Remove a project's or group's own settings, so that it inherits again.
    Clear {
        #[command(flatten)]
        target: JsmTarget,
        #[arg(long)]
        site: Option<String>,
    },
    /// The JSM settings in force, per linked group and project.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SitesCommand {
    /// Register a Jira site with OAuth credentials created by a site admin (Settings → Apps → OAuth credentials).
    #[command(group(clap::ArgGroup::new("jira_secret").required(true).multiple(false)))]
    AddOauth {
        /// The site, e.g. https://acme.atlassian.net.
        #[arg(long)]
        url: String,
        #[arg(long)]
        client_id: String,
        /// The OAuth client secret. Prefer the environment (GFJ_JIRA_CLIENT_SECRET) or
        /// --client-secret-file: other users of the machine can read command lines.
        #[arg(
            long,
            env = "GFJ_JIRA_CLIENT_SECRET",
            hide_env_values = true,
            group = "jira_secret"
        )]
        client_secret: Option<String>,
        /// A file holding the OAuth client secret (surrounding whitespace is ignored).
        #[arg(long, group = "jira_secret")]
        client_secret_file: Option<PathBuf>,
    },
    /// List Jira sites.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Send a site only the issue keys of these Jira projects (drops look-alikes such as UTF-8).
    SetProjectKeys {
        /// The Jira site: a Connect clientKey or a Jira base URL.
        #[arg(long)]
        site: String,
        /// Comma-separated Jira project keys, e.g. PROJ,OPS; empty to send every key again.
        #[arg(long, default_value = "")]
        keys: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gitlab-for-jira: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Doctor { json } = cli.command {
        // Settings that do not load are the first finding, not an error before any check.
        let report = runtime.block_on(async {
            let settings = Settings::load(cli.config.as_deref());
            if let Ok(s) = &settings {
                gitlab_for_jira::telemetry::init(s.log_format.as_deref());
            }
            doctor::doctor(settings, SystemClock.now_ms()).await
        });
        println!("{}", report.render(json));
        return if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    match runtime.block_on(run(cli)) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gitlab-for-jira: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

/// A secret given as a value (flag or environment) or in a file; an empty one is an error, not a blank.
fn secret(
    value: Option<String>,
    file: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    let secret =
        match file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the {what} from {}: {e}", path.display())
            })?),
            None => value,
        };
    match secret.map(|s| s.trim().to_owned()) {
        Some(s) if s.is_empty() => anyhow::bail!("the {what} is empty"),
        other => Ok(other),
    }
}

/// `--wait`: the backfill followed on stderr; nothing more on stdout, where the command's JSON went.
async fn follow(store: &gfj_store::Store, subscription_id: i64) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let summary = wait::follow(store, &SystemClock, subscription_id, terminal).await?;
    eprintln!("{summary}");
    Ok(String::new())
}

async fn run(cli: Cli) -> anyhow::Result<String> {
    let settings = Settings::load(cli.config.as_deref())?;
    gitlab_for_jira::telemetry::init(settings.log_format.as_deref());
    let now = SystemClock.now_ms();
    match cli.command {
        Command::Serve => serve::run(settings).await.map(|()| String::new()),
        Command::Demo { serve } => demo::run(serve).await,
        Command::Doctor { .. } => unreachable!("doctor runs before the settings are required"),
        Command::Link {
            site,
            group,
            gitlab_url,
            gitlab_token,
            gitlab_token_file,
            gitlab_connection,
            hook_mode,
            wait,
        } => {
            let gitlab_token = secret(gitlab_token, gitlab_token_file.as_deref(), "GitLab token")?;
            let store = settings.open_store().await?;
            let req = link::LinkRequest {
                site,
                group,
                gitlab_url,
                gitlab_token: gitlab_token.unwrap_or_default(),
                gitlab_connection,
                hook_mode,
            };
            let linked = link::link(&settings, &store, req, now).await?;
            let out = serde_json::to_string(&linked)?;
            if !wait {
                return Ok(out);
            }
            println!("{out}");
            follow(&store, linked.id).await
        }
        Command::Unlink { site, group } => {
            let store = settings.open_store().await?;
            let removed = link::unlink(&settings, &store, &site, &group, now).await?;
            Ok(format!("unlinked {group}; removed {removed} webhook(s)"))
        }
        Command::Sites {
            command:
                SitesCommand::AddOauth {
                    url,
                    client_id,
                    client_secret,
                    client_secret_file,
                },
        } => {
            let client_secret = secret(
                client_secret,
                client_secret_file.as_deref(),
                "OAuth client secret",
            )?
            .unwrap_or_default();
            let store = settings.open_store().await?;
            sites::add_oauth(&settings, &store, &url, &client_id, &client_secret, now).await
        }
        Command::Sites {
            command: SitesCommand::List { json },
        } => status::sites(&settings.open_store().await?, json).await,
        Command::Sites {
            command: SitesCommand::SetProjectKeys { site, keys },
        } => sites::set_project_keys(&settings.open_store().await?, &site, &keys).await,
        Command::Status {
            json,
            issue: Some(key),
        } => {
            status::issue(
                &settings.open_store().await?,
                &key,
                settings.audit_days,
                json,
            )
            .await
        }
        Command::Status { json, issue: None } => {
            use std::io::IsTerminal;
            let bars = std::io::stdout().is_terminal();
            status::status(&settings.open_store().await?, now, json, bars).await
        }
        Command::Jsm {
            command:
                JsmCommand::Set {
                    target,
                    site,
                    service_ids,
                    gating_tiers,
                    gating_token_file,
                    play_after_approval,
                },
        } => {
            let gating_token = secret(None, gating_token_file.as_deref(), "gating token")?;
            let req = jsm::SetRequest {
                site,
                target: target.target(),
                service_ids,
                gating_tiers,
                gating_token,
                play_after_approval,
            };
            jsm::set(&settings, &settings.open_store().await?, &req, now).await
        }
        Command::Jsm {
            command: JsmCommand::Clear { target, site },
        } => {
            jsm::clear(
                &settings.open_store().await?,
                site.as_deref(),
                &target.target(),
            )
            .await
        }
        Command::Jsm {
            command: JsmCommand::Show { json },
        } => jsm::show(&settings.open_store().await?, json).await,
        Command::Resync {
            site,
            group,
            project,
            since,
            failed,
            wait,
        } => {
            let store = settings.open_store().await?;
            let req = resync::ResyncRequest {
                site,
                group,
                project,
                since,
                only_failed: failed,
            };
            let resynced = resync::resync(&settings, &store, &req, now).await?;
            let out = serde_json::to_string(&resynced)?;
            if !wait {
                return Ok(out);
            }
            println!("{out}");
            follow(&store, resynced.subscription_id).await
        }
    }
}
