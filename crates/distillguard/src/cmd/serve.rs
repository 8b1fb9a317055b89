//! `distillguard serve`: the long-running service.

use distillguard_server::{telemetry, Application};

use super::settings::SettingsArgs;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Start over: delete the embedded store (findings, review history, checkpoints and the
    /// event-time watermark) and the event log in the data directory first. Refused when
    /// database_url is set.
    #[arg(long)]
    pub reset: bool,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(&args.settings.log, args.settings.log_format);
    let settings = args.settings.load()?;
    if args.reset {
        let removed = distillguard_server::app::reset_data_dir(&settings)?;
        tracing::warn!(
            data_dir = %settings.data_dir.display(),
            removed = ?removed,
            "--reset: starting over with no findings, no review history and no watermark"
        );
    }
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes and docker send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
