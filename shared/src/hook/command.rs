//! A command as the hook (local server only): `sh -c COMMAND`, the event on its stdin, its stdout the answer. Its
//! stderr is the server's, so what a hook prints while it is being written shows where the server runs.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{HookFailure, MAX_ANSWER_BYTES};

pub(super) async fn run(command: &str, event: Vec<u8>) -> Result<Vec<u8>, HookFailure> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A hook that overruns its time, or answers too much, is killed when its call is dropped.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HookFailure::new(format!("the hook command could not start: {e}")))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(HookFailure::new("the hook command has no stdin or stdout"));
    };
    let write = async move {
        // A command that ignores its stdin closes it early: that is its business, not a failure.
        let _ = stdin.write_all(&event).await;
    };
    let mut answer = Vec::new();
    // One byte over the bound is enough to know the answer is too big.
    let mut limited = stdout.take(MAX_ANSWER_BYTES as u64 + 1);
    let read = limited.read_to_end(&mut answer);
    let ((), read) = tokio::join!(write, read);
    read.map_err(|e| HookFailure::new(format!("could not read the hook command's answer: {e}")))?;
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(HookFailure::new(format!("the hook's answer is over the limit of {MAX_ANSWER_BYTES} bytes")));
    }
    let status = child.wait().await.map_err(|e| HookFailure::new(format!("the hook command was lost: {e}")))?;
    if !status.success() {
        return Err(HookFailure::new(format!("the hook command failed ({status})")));
    }
    Ok(answer)
}
