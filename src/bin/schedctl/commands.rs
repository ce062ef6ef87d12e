//! The subcommands: each makes its call (or follows its stream) and prints
//! what came back, converted to the HTTP API's JSON forms
//! ([`scheduler_service::http::model`]).

use clap::CommandFactory;
use scheduler_service::{
    grpc::{
        proto::{
            DeleteJobRequest, GetJobRequest, ListJobRunsRequest, ListJobsRequest, PauseJobRequest,
            RerunJobRequest, ResumeJobRequest, TriggerJobRequest,
        },
        scheduler::v1::{AckRequest, subscribe_response::Item},
    },
    http::model::{Job, JobRun, Preview},
};

use crate::{
    args::{Cli, Command, IdArg, ListArgs, RunsArgs, WatchArgs},
    client::{Client, connect},
    errors::CliError,
    output::Printer,
    requests,
};

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let Cli { global, command } = cli;
    if let Command::Completions(args) = &command {
        let mut cli = Cli::command();
        clap_complete::generate(args.shell, &mut cli, "schedctl", &mut std::io::stdout());
        return Ok(());
    }
    let out = Printer::new(global.output, global.utc);
    let client = connect(&global).await?;
    dispatch(&client, command, &out).await
}

/// Makes the call of `command` and prints its answer.
async fn dispatch(client: &Client, command: Command, out: &Printer) -> Result<(), CliError> {
    let (mut jobs, mut events) = (client.jobs(), client.events());
    match command {
        Command::Create(args) => {
            let request = client.request(requests::create(args)?);
            out.created(client.call(jobs.create_job(request)).await?.id)
        }
        Command::Get(IdArg { id }) => {
            let request = client.request(GetJobRequest { id });
            out.job(&client.call(jobs.get_job(request)).await?.into())
        }
        Command::List(args) => list(client, &args, out).await,
        Command::Update(args) => {
            let id = args.id.clone();
            let request = client.request(requests::update(args)?);
            client.call(jobs.update_job(request)).await?;
            out.done("updated", &id)
        }
        Command::Delete(IdArg { id }) => {
            let request = client.request(DeleteJobRequest { id: id.clone() });
            client.call(jobs.delete_job(request)).await?;
            out.done("deleted", &id)
        }
        Command::Pause(IdArg { id }) => {
            let request = client.request(PauseJobRequest { id });
            out.job(&client.call(jobs.pause_job(request)).await?.into())
        }
        Command::Resume(IdArg { id }) => {
            let request = client.request(ResumeJobRequest { id });
            out.job(&client.call(jobs.resume_job(request)).await?.into())
        }
        Command::Trigger(IdArg { id }) => {
            let request = client.request(TriggerJobRequest { id });
            out.job(&client.call(jobs.trigger_job(request)).await?.into())
        }
        Command::Rerun(IdArg { id }) => {
            let request = client.request(RerunJobRequest { id });
            out.job(&client.call(jobs.rerun_job(request)).await?.into())
        }
        Command::Preview(args) => {
            let request = client.request(requests::preview(args));
            let preview = Preview::from(client.call(jobs.preview_schedule(request)).await?);
            out.occurrences(&preview.occurrences)
        }
        Command::Runs(args) => runs(client, &args, out).await,
        Command::Watch(args) => watch(client, &args, out).await,
        Command::Report(args) => {
            let id = args.id.clone();
            let request = client.request(requests::report(args));
            out.reported(
                &id,
                &client.call(events.report_result(request)).await?.outcome,
            )
        }
        Command::Completions(_) => Ok(()),
    }
}

/// How far a listing went: one page, or every page from the first asked.
struct Listed<T> {
    items: Vec<T>,
    page: i64,
    total_pages: i64,
    total_count: i64,
    has_more: bool,
}

impl<T> Listed<T> {
    /// The line under a table: the count, and how to see more.
    fn footer(&self, noun: &str, all: bool) -> String {
        let total = self.total_count;
        let noun = if total == 1 {
            noun.to_owned()
        } else {
            format!("{noun}s")
        };
        match (all, self.has_more) {
            (false, true) => format!(
                "{total} {noun}, page {} of {}: --page {} for more, --all for every page",
                self.page,
                self.total_pages,
                self.page + 1
            ),
            _ => format!("{total} {noun}"),
        }
    }
}

/// `list`: a page of jobs, or every page from `--page` with `--all`.
async fn list(client: &Client, filters: &ListArgs, out: &Printer) -> Result<(), CliError> {
    let args = &filters.page;
    let mut listed: Listed<Job> = Listed {
        items: Vec::new(),
        page: args.page,
        total_pages: 0,
        total_count: 0,
        has_more: true,
    };
    while listed.has_more {
        let (page, size) = (listed.page, args.size);
        let request = client.request(ListJobsRequest {
            page,
            size,
            ..filters.into()
        });
        let reply = client.call(client.jobs().list_jobs(request)).await?;
        listed.items.extend(reply.jobs.into_iter().map(Job::from));
        (listed.total_pages, listed.total_count) = (reply.total_pages, reply.total_count);
        listed.has_more = reply.has_more;
        if !(args.all && reply.has_more) {
            break;
        }
        listed.page += 1;
    }
    out.jobs(&listed.items, &listed.footer("job", args.all))
}

/// `runs`: a page of a job's runs, or every page from `--page` with `--all`.
async fn runs(client: &Client, args: &RunsArgs, out: &Printer) -> Result<(), CliError> {
    let mut listed: Listed<JobRun> = Listed {
        items: Vec::new(),
        page: args.page.page,
        total_pages: 0,
        total_count: 0,
        has_more: true,
    };
    while listed.has_more {
        let (id, page, size) = (args.id.clone(), listed.page, args.page.size);
        let request = client.request(ListJobRunsRequest { id, page, size });
        let reply = client.call(client.jobs().list_job_runs(request)).await?;
        listed
            .items
            .extend(reply.runs.into_iter().map(JobRun::from));
        (listed.total_pages, listed.total_count) = (reply.total_pages, reply.total_count);
        listed.has_more = reply.has_more;
        if !(args.page.all && reply.has_more) {
            break;
        }
        listed.page += 1;
    }
    out.runs(&listed.items, &listed.footer("run", args.page.all))
}

/// `watch`: subscribes, then prints each event as it comes (and
/// acknowledges it with `--ack`) until the stream ends or `--limit`.
async fn watch(client: &Client, args: &WatchArgs, out: &Printer) -> Result<(), CliError> {
    // No grpc-timeout on the stream: it lasts as long as the user wants;
    // the deadline bounds only the wait for the service to take it.
    let mut events = client.events();
    let mut stream = client
        .call(events.subscribe(requests::subscribe(args)))
        .await?;
    eprintln!("schedctl: watching events (Ctrl-C to stop)");
    out.events_header()?;
    let mut seen = 0;
    while args.limit.is_none_or(|limit| seen < limit) {
        let Some(response) = stream.message().await.map_err(CliError::Status)? else {
            return Ok(());
        };
        match response.item {
            Some(Item::Event(event)) => {
                let sequence = event.sequence;
                out.event(&event.into())?;
                acknowledge(client, args, sequence).await?;
                seen += 1;
            }
            Some(Item::Lagged(lagged)) => out.lagged(lagged.into())?,
            None => {}
        }
    }
    Ok(())
}

/// Acknowledges the event at `sequence` for the named subscription, with
/// `--ack`.
async fn acknowledge(client: &Client, args: &WatchArgs, sequence: u64) -> Result<(), CliError> {
    let (true, Some(subscription)) = (args.ack, &args.subscription) else {
        return Ok(());
    };
    let request = client.request(AckRequest {
        subscription: subscription.clone(),
        sequence,
    });
    client.call(client.events().ack(request)).await?;
    Ok(())
}
