//! What a failed CreateVolume means for the claim.
//!
//! Mirrors external-provisioner's `checkError` table (`pkg/controller/controller.go`), plus
//! one rule of ours for claims deleted mid-provisioning.

use tonic::Code;

/// How to continue after CreateVolume failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The driver may still be creating the volume (timeout, cancel,
    /// unavailable, aborted): retry, even if the claim is deleted meanwhile.
    InProgress,
    /// The driver refused for good this time; retry with backoff while the
    /// claim exists.
    Final,
    /// InvalidArgument: retry only after `--retry-interval-max`, with
    /// upstream's "infeasible" event text.
    Infeasible,
    /// ResourceExhausted on a selected node with topology: let the scheduler
    /// pick another node.
    Reschedule,
}

/// Classifies a CreateVolume status code.
///
/// `topology` is whether topology is in use for this driver; `selected_node`
/// whether the claim carries `volume.kubernetes.io/selected-node`.
pub fn classify_create_error(code: Code, topology: bool, selected_node: bool) -> CreateOutcome {
    match code {
        Code::ResourceExhausted if topology && selected_node => CreateOutcome::Reschedule,
        Code::Cancelled | Code::DeadlineExceeded | Code::Unavailable | Code::Aborted => {
            CreateOutcome::InProgress
        }
        Code::InvalidArgument => CreateOutcome::Infeasible,
        _ => CreateOutcome::Final,
    }
}

/// True when a CreateVolume error proves that no volume exists under the
/// requested name, so a deleted claim's creation intent can be dropped.
///
/// Deliberately narrow: `Internal`, `Unknown`, `DataLoss` and
/// `AlreadyExists` may follow a partial or earlier creation, so those keep
/// the intent (and the claim visibly Terminating) until a retry succeeds and
/// the volume can be deleted.
pub fn proves_nothing_created(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::ResourceExhausted
    )
}

/// The event text upstream uses for InvalidArgument failures.
pub fn infeasible_message(err: &str) -> String {
    format!("Volume provisioning failed with infeasible error. Retries will be delayed. {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every gRPC code × topology × selected node, as upstream's
    /// TestProvisionErrorHandling table.
    #[test]
    fn classification_table() {
        use CreateOutcome::*;
        let in_progress = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Unavailable,
            Code::Aborted,
        ];
        let all = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        for code in all {
            for topology in [false, true] {
                for selected in [false, true] {
                    let want = if code == Code::ResourceExhausted && topology && selected {
                        Reschedule
                    } else if in_progress.contains(&code) {
                        InProgress
                    } else if code == Code::InvalidArgument {
                        Infeasible
                    } else {
                        Final
                    };
                    assert_eq!(
                        classify_create_error(code, topology, selected),
                        want,
                        "{code:?} topology={topology} selected={selected}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_clear_refusals_prove_absence() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::Unimplemented,
            Code::OutOfRange,
        ] {
            assert!(proves_nothing_created(code), "{code:?}");
        }
        for code in [
            Code::Internal,
            Code::Unknown,
            Code::AlreadyExists,
            Code::DeadlineExceeded,
            Code::Unavailable,
            Code::DataLoss,
            Code::Aborted,
        ] {
            assert!(!proves_nothing_created(code), "{code:?}");
        }
    }

    #[test]
    fn infeasible_text() {
        assert_eq!(
            infeasible_message("rpc error: code = InvalidArgument desc = bad"),
            "Volume provisioning failed with infeasible error. Retries will be delayed. rpc error: code = InvalidArgument desc = bad"
        );
    }
}
