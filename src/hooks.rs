//! Claude Code's hook events: their names, which take a tool matcher, the version
//! that introduced each, and the ones deliberately not hooked. Shared by
//! `install_hooks` (what to install), `record` (how each event fails closed) and the
//! telemetry receiver (which names are hook events).

use std::fmt;
use std::str::FromStr;

/// A Claude Code version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = String;

    /// `2.1.114`; a suffix after the patch number (`2.1.114-beta`) is ignored.
    fn from_str(s: &str) -> Result<Version, String> {
        let bad = || format!("`{s}` is not a version like 2.1.114");
        let mut parts = s.splitn(3, '.');
        let mut next = |all: bool| -> Result<u32, String> {
            let part = parts.next().ok_or_else(bad)?;
            let digits = if all {
                part
            } else {
                let end = part
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(part.len());
                &part[..end]
            };
            digits.parse().map_err(|_| bad())
        };
        Ok(Version::new(next(true)?, next(true)?, next(false)?))
    }
}

/// One Claude Code hook event we install for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookEvent {
    /// The key under `hooks`, as Claude Code spells it.
    pub name: &'static str,
    /// Its matcher filters tool names, so our group says `"matcher": "*"`. Events
    /// whose matcher filters something else (a session source, a notification type)
    /// or that have none get a group without `matcher`, which every version reads as
    /// "match all" and which is the only valid form where no matcher is supported.
    pub matcher: bool,
    /// First Claude Code version that knows the name. A version before 2.1.101 that
    /// meets an unknown name skips the whole file, so we never write a name older
    /// versions do not know.
    pub since: Version,
}

/// From this version on Claude Code ignores hook event names it does not know instead
/// of skipping the whole settings file (changelog 2.1.101: "an unrecognized hook event
/// name in settings.json no longer causes the entire file to be ignored").
pub const UNKNOWN_EVENTS_TOLERATED_SINCE: Version = Version::new(2, 1, 101);

const fn event(name: &'static str, matcher: bool, since: Version) -> HookEvent {
    HookEvent {
        name,
        matcher,
        since,
    }
}

const fn v(major: u32, minor: u32, patch: u32) -> Version {
    Version::new(major, minor, patch)
}

/// Events newer than the last changelog we could read (2.1.114). Listing them from
/// 2.1.101 is safe: from there on an unknown name is ignored, not fatal.
const LATER: Version = UNKNOWN_EVENTS_TOLERATED_SINCE;

/// Every hook event we install for, in the order of a session's lifecycle. Sources:
/// the hooks reference at code.claude.com/docs/en/hooks (its lifecycle diagram names
/// every event) and the Claude Code CHANGELOG.md for `since`.
pub const EVENTS: &[HookEvent] = &[
    event("Setup", false, v(2, 1, 10)),
    event("SessionStart", false, v(1, 0, 62)),
    event("InstructionsLoaded", false, v(2, 1, 69)),
    event("UserPromptSubmit", false, v(1, 0, 54)),
    event("UserPromptExpansion", false, LATER),
    event("PreToolUse", true, v(1, 0, 38)),
    event("PermissionRequest", true, v(2, 0, 45)),
    event("PermissionDenied", true, v(2, 1, 89)),
    event("PostToolUse", true, v(1, 0, 38)),
    // Not in the changelog; documented by January 2026, so surely known to 2.1.32
    // (February 2026). An upper bound, chosen so no older version meets it.
    event("PostToolUseFailure", true, v(2, 1, 32)),
    event("PostToolBatch", false, LATER),
    event("Notification", false, v(1, 0, 38)),
    event("SubagentStart", false, v(2, 0, 43)),
    event("SubagentStop", false, v(1, 0, 41)),
    event("TaskCreated", false, v(2, 1, 84)),
    event("TaskCompleted", false, v(2, 1, 33)),
    event("TeammateIdle", false, v(2, 1, 33)),
    event("Stop", false, v(1, 0, 38)),
    event("StopFailure", false, v(2, 1, 78)),
    event("PreCompact", false, v(1, 0, 48)),
    event("PostCompact", false, v(2, 1, 76)),
    event("Elicitation", false, v(2, 1, 76)),
    event("ElicitationResult", false, v(2, 1, 76)),
    event("ConfigChange", false, v(2, 1, 49)),
    event("CwdChanged", false, v(2, 1, 83)),
    event("DirectoryAdded", false, LATER),
    event("WorktreeRemove", false, v(2, 1, 50)),
    event("PreModelSwitch", false, LATER),
    event("PostModelSwitch", false, LATER),
    event("SessionEnd", false, v(1, 0, 85)),
];

/// Documented events we deliberately do not hook, and why.
pub const EXCLUDED_EVENTS: &[(&str, &str)] = &[
    (
        "WorktreeCreate",
        "a command hook replaces Claude Code's own `git worktree add` and must print the \
         new worktree's path; a recorder there would break `claude -w` and isolated subagents",
    ),
    (
        "FileChanged",
        "its matcher is the list of files Claude Code watches, not a filter; it reports \
         the developer's own edits, while the agent's writes arrive as PostToolUse",
    ),
    (
        "MessageDisplay",
        "display-only, fired while assistant text streams: one recorder process per chunk \
         would cost latency and carries nothing an auditor needs beyond Stop",
    ),
];

const EVENT_COUNT: usize = EVENTS.len();

const fn event_pairs() -> [(&'static str, bool); EVENT_COUNT] {
    let mut out = [("", false); EVENT_COUNT];
    let mut i = 0;
    while i < EVENT_COUNT {
        out[i] = (EVENTS[i].name, EVENTS[i].matcher);
        i += 1;
    }
    out
}

/// [`EVENTS`] as `(name, takes a tool matcher)` pairs.
pub const HOOK_EVENTS: &[(&str, bool)] = &event_pairs();

/// The events to install for Claude Code `version`: all of them when the version is
/// unknown or tolerates unknown names (2.1.101+), else those it already knows.
///
/// An unknown version gets every event on the grounds that Claude Code updates itself
/// and a machine that gains it later gains a current release; a fleet that pins an
/// older release must say which (`claude --version`, [`detect_claude_version`]).
pub fn events_for(version: Option<Version>) -> Vec<&'static HookEvent> {
    EVENTS
        .iter()
        .filter(|e| match version {
            Some(v) if v < UNKNOWN_EVENTS_TOLERATED_SINCE => e.since <= v,
            _ => true,
        })
        .collect()
}
