//! Credentials given to well-known programs as arguments: `curl -u user:pass`,
//! `mysql -pSECRET`, `sshpass -p X`, `docker login -p X`, `aws configure set
//! aws_secret_access_key X`, `sqlplus user/pass@db` and their kin.
//!
//! Which argument is a credential depends on the program (`-p` is a password for
//! `sshpass`, a port for `docker run`, a database for `mysql -p db`), so the rules are
//! per program ([`COMMANDS`]). The same rules read a command line in text (split into
//! arguments roughly as a shell would, up to the end of the command) and an argument
//! vector given as a JSON array, where every item is one argument as it stands.
//! Generic `--password X` / `--password=X` flags are the key word detectors' job.

use super::keys::{self, cookie_values};
use super::scan::{closing_quote, find_outside_markers, is_blank, run, run_back};
use super::{Ctx, Hit, RANK_ARGUMENT};

/// Which part of a flag's value is the secret.
#[derive(Debug, Clone, Copy)]
enum Part {
    Whole,
    /// What follows the first such separator: `user:pass`, `user%pass`, `user,pass`.
    /// Without the separator there is no secret (`curl -u user` asks for it).
    After(u8),
    /// What follows this literal (`-passin pass:X`; `env:VAR` and `file:` are not secrets).
    AfterPrefix(&'static str),
    /// `name=value` pairs separated by `;`; a bare word names a cookie file.
    Cookies,
}

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The next argument, or `--flag=value`.
    Next,
    /// Written onto the flag: `-pSECRET` (`-p` alone asks for it).
    Attached,
    /// Either: `-p X` or `-pX`.
    Both,
}

struct Flag {
    name: &'static str,
    form: Form,
    part: Part,
}

const fn flag(name: &'static str, form: Form, part: Part) -> Flag {
    Flag { name, form, part }
}

/// Rules beyond flags, for programs that take secrets as positional arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    /// `htpasswd -b[n] [file] user password`.
    Htpasswd,
    /// `sqlplus user/password@db`.
    Sqlplus,
    /// `<tool> config set <secret-named key> <value>` (after `needs`).
    ConfigSet,
    /// `fly secrets set NAME=VALUE …`: every value is a secret.
    SecretsSet,
    /// `vault login <token>`.
    FirstPositional,
}

pub(super) struct Command {
    pub(super) names: &'static [&'static str],
    /// Positional words that must come first, in order (`login` for `docker login`).
    needs: &'static [&'static str],
    flags: &'static [Flag],
    special: Special,
}

const fn cmd(names: &'static [&'static str], flags: &'static [Flag]) -> Command {
    Command {
        names,
        needs: &[],
        flags,
        special: Special::None,
    }
}

const fn after(needs: &'static [&'static str], c: Command) -> Command {
    Command { needs, ..c }
}

const fn special(special: Special, c: Command) -> Command {
    Command { special, ..c }
}

const USER_PASS: Part = Part::After(b':');

/// Programs and where their credentials are. Names are matched in lower case.
pub(super) const COMMANDS: &[Command] = &[
    cmd(
        &["curl"],
        &[
            flag("-u", Form::Both, USER_PASS),
            flag("--user", Form::Next, USER_PASS),
            flag("-U", Form::Both, USER_PASS),
            flag("--proxy-user", Form::Next, USER_PASS),
            flag("-E", Form::Next, USER_PASS),
            flag("--cert", Form::Next, USER_PASS),
            flag("--oauth2-bearer", Form::Next, Part::Whole),
            flag("-b", Form::Next, Part::Cookies),
            flag("--cookie", Form::Next, Part::Cookies),
        ],
    ),
    cmd(
        &[
            "mysql",
            "mysqldump",
            "mysqladmin",
            "mysqlimport",
            "mysqlshow",
            "mysqlcheck",
            "mysqlpump",
            "mysqlslap",
            "mysqlsh",
            "mysqlbinlog",
            "mariadb",
            "mariadb-dump",
            "mariadb-admin",
            "mariadb-import",
        ],
        &[flag("-p", Form::Attached, Part::Whole)],
    ),
    cmd(&["sshpass"], &[flag("-p", Form::Both, Part::Whole)]),
    after(
        &["login"],
        cmd(
            &[
                "docker", "podman", "nerdctl", "buildah", "skopeo", "oras", "crane", "az", "cf",
            ],
            &[flag("-p", Form::Both, Part::Whole)],
        ),
    ),
    after(
        &["registry", "login"],
        cmd(&["helm"], &[flag("-p", Form::Both, Part::Whole)]),
    ),
    cmd(&["redis-cli"], &[flag("-a", Form::Next, Part::Whole)]),
    cmd(
        &[
            "mongo",
            "mongosh",
            "mongodump",
            "mongorestore",
            "mongoexport",
            "mongoimport",
            "mongostat",
            "mongotop",
            "mongofiles",
        ],
        &[flag("-p", Form::Both, Part::Whole)],
    ),
    cmd(&["sqlcmd", "bcp"], &[flag("-P", Form::Both, Part::Whole)]),
    cmd(
        &[
            "ldapsearch",
            "ldapadd",
            "ldapmodify",
            "ldapdelete",
            "ldapwhoami",
            "ldapmodrdn",
            "ldapcompare",
            "ldapexop",
        ],
        &[flag("-w", Form::Both, Part::Whole)],
    ),
    cmd(
        &["ldappasswd"],
        &[
            flag("-w", Form::Both, Part::Whole),
            flag("-s", Form::Both, Part::Whole),
        ],
    ),
    cmd(
        &["mosquitto_pub", "mosquitto_sub", "mosquitto_rr"],
        &[
            flag("-P", Form::Next, Part::Whole),
            flag("--pw", Form::Next, Part::Whole),
        ],
    ),
    cmd(
        &["smbclient", "rpcclient", "smbcacls", "smbget"],
        &[
            flag("-U", Form::Both, Part::After(b'%')),
            flag("--user", Form::Next, Part::After(b'%')),
        ],
    ),
    cmd(&["lftp"], &[flag("-u", Form::Both, Part::After(b','))]),
    cmd(
        &["http", "https", "xh", "xhs"],
        &[
            flag("-a", Form::Both, USER_PASS),
            flag("--auth", Form::Next, USER_PASS),
        ],
    ),
    cmd(
        &["openssl"],
        &[
            flag("-passin", Form::Next, Part::AfterPrefix("pass:")),
            flag("-passout", Form::Next, Part::AfterPrefix("pass:")),
            flag("-pass", Form::Next, Part::AfterPrefix("pass:")),
            flag("-k", Form::Next, Part::Whole),
        ],
    ),
    cmd(
        &["zip", "unzip", "zipcloak"],
        &[flag("-P", Form::Next, Part::Whole)],
    ),
    cmd(
        &["keytool", "jarsigner"],
        &[
            flag("-storepass", Form::Next, Part::Whole),
            flag("-keypass", Form::Next, Part::Whole),
            flag("-srcstorepass", Form::Next, Part::Whole),
            flag("-deststorepass", Form::Next, Part::Whole),
            flag("-srckeypass", Form::Next, Part::Whole),
            flag("-destkeypass", Form::Next, Part::Whole),
            flag("-new", Form::Next, Part::Whole),
        ],
    ),
    cmd(&["ipmitool"], &[flag("-P", Form::Next, Part::Whole)]),
    cmd(
        &["ssh-keygen"],
        &[
            flag("-N", Form::Next, Part::Whole),
            flag("-P", Form::Next, Part::Whole),
        ],
    ),
    after(
        &["secret"],
        cmd(
            &["gh"],
            &[
                flag("-b", Form::Both, Part::Whole),
                flag("--body", Form::Next, Part::Whole),
            ],
        ),
    ),
    special(Special::Htpasswd, cmd(&["htpasswd"], &[])),
    special(Special::Sqlplus, cmd(&["sqlplus", "sqlldr"], &[])),
    special(
        Special::ConfigSet,
        after(&["configure", "set"], cmd(&["aws"], &[])),
    ),
    special(Special::ConfigSet, after(&["config"], cmd(&["git"], &[]))),
    special(
        Special::ConfigSet,
        after(&["config", "set"], cmd(&["npm", "yarn", "pnpm"], &[])),
    ),
    special(
        Special::SecretsSet,
        after(&["secrets", "set"], cmd(&["fly", "flyctl", "doppler"], &[])),
    ),
    special(
        Special::FirstPositional,
        after(&["login"], cmd(&["vault"], &[])),
    ),
];

/// The command a program name (a path's last part, any case) stands for.
pub(super) fn command(name: &[u8]) -> Option<&'static Command> {
    let base = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
    // Only names of the same length are compared: most words have none.
    BY_LENGTH
        .get(base.len())?
        .iter()
        .find(|(n, _)| base.eq_ignore_ascii_case(n.as_bytes()))
        .map(|&(_, c)| c)
}

/// Every program name with its command, by the name's length, in `COMMANDS` order.
static BY_LENGTH: std::sync::LazyLock<Vec<Vec<(&str, &Command)>>> =
    std::sync::LazyLock::new(|| {
        let mut by_length: Vec<Vec<(&str, &Command)>> = Vec::new();
        for c in COMMANDS {
            for n in c.names {
                if by_length.len() <= n.len() {
                    by_length.resize_with(n.len() + 1, Vec::new);
                }
                by_length[n.len()].push((n, c));
            }
        }
        by_length
    });

/// One argument: its bytes, and whether they stand as they are (an item of an
/// argument vector) or as a shell wrote them (quotes still in place).
pub(super) struct Arg<'a> {
    pub bytes: &'a [u8],
    /// Where the argument starts in the text it was read from (0 for an item).
    pub at: usize,
    pub literal: bool,
}

impl Arg<'_> {
    /// The argument's text without quotes, where that is all of it (`"login"`).
    fn word(&self) -> &[u8] {
        let b = self.bytes;
        match b {
            [q @ (b'"' | b'\''), inner @ .., last] if !self.literal && q == last => inner,
            _ => b,
        }
    }

    /// The argument's value as a whole, without its quotes (empty if none).
    fn unquoted(&self) -> &[u8] {
        self.value(0).map_or(&[][..], |(s, e)| &self.bytes[s..e])
    }

    /// The value starting at `from`: inside quotes if it is quoted, else up to a quote.
    fn value(&self, from: usize) -> Option<(usize, usize)> {
        let b = self.bytes;
        if from >= b.len() {
            return None;
        }
        if self.literal {
            return Some((from, b.len()));
        }
        match b[from] {
            q @ (b'"' | b'\'') => {
                let end = closing_quote(b, from + 1, q).unwrap_or(b.len());
                (end > from + 1).then_some((from + 1, end))
            }
            _ => Some((from, run(b, from, |&c| c != b'"' && c != b'\''))),
        }
    }
}

/// A secret in argument `arg`, at `start..end` of its bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    pub arg: usize,
    pub start: usize,
    pub end: usize,
    pub name: &'static str,
}

/// Applies `cmd`'s rules to the arguments that follow the program name.
pub(super) fn apply(cmd: &Command, args: &[Arg<'_>], out: &mut Vec<Found>) {
    let mut needs = 0;
    let mut positional = 0;
    let mut htpasswd = None;
    let mut config_key = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let word = a.word();
        let is_flag = word.len() > 1 && word[0] == b'-';
        if needs < cmd.needs.len() {
            if !is_flag && word.eq_ignore_ascii_case(cmd.needs[needs].as_bytes()) {
                needs += 1;
            }
            i += 1;
            continue;
        }
        if is_flag {
            if cmd.special == Special::Htpasswd && word[1] != b'-' && word.contains(&b'b') {
                htpasswd = Some(if word.contains(&b'n') { 2 } else { 3 });
            }
            i += flag_value(cmd, args, i, out);
            continue;
        }
        positional += 1;
        match cmd.special {
            Special::Htpasswd if htpasswd == Some(positional) => whole(args, i, out),
            Special::Sqlplus if positional == 1 => sqlplus(a, i, out),
            Special::ConfigSet if config_key => {
                whole(args, i, out);
                config_key = false;
            }
            Special::ConfigSet => {
                let key = a.unquoted();
                config_key = !key.contains(&b'=')
                    && std::str::from_utf8(key)
                        .is_ok_and(|k| matches!(keys::key_context(k), Ctx::Secret(_)));
            }
            Special::SecretsSet => {
                if let Some((vs, ve)) = a.value(0)
                    && let Some(eq) = a.bytes[vs..ve].iter().position(|&c| c == b'=')
                {
                    push(a, i, Some((vs + eq + 1, ve)), Part::Whole, out);
                }
            }
            Special::FirstPositional if positional == 1 && !a.unquoted().contains(&b'=') => {
                whole(args, i, out);
            }
            _ => {}
        }
        i += 1;
    }
}

/// The secret of flag argument `i`, if it is one of `cmd`'s; returns how many
/// arguments it used (1, or 2 with a separate value).
fn flag_value(cmd: &Command, args: &[Arg<'_>], i: usize, out: &mut Vec<Found>) -> usize {
    let a = &args[i];
    let b = a.bytes;
    for f in cmd.flags {
        let name = f.name.as_bytes();
        if !b.starts_with(name) {
            continue;
        }
        let long = name.len() > 2;
        if b.len() == name.len() {
            if f.form == Form::Attached {
                return 1;
            }
            let Some(next) = args.get(i + 1) else {
                return 1;
            };
            let w = next.word();
            if w.len() > 1 && w[0] == b'-' {
                return 1; // `-p -h host`: the value was left out
            }
            push(next, i + 1, next.value(0), f.part, out);
            return 2;
        }
        if long && b[name.len()] == b'=' {
            push(a, i, a.value(name.len() + 1), f.part, out);
            return 1;
        }
        if !long && f.form != Form::Next {
            push(a, i, a.value(name.len()), f.part, out);
            return 1;
        }
    }
    1
}

fn whole(args: &[Arg<'_>], i: usize, out: &mut Vec<Found>) {
    push(&args[i], i, args[i].value(0), Part::Whole, out);
}

/// `user/password@db`: the part between `/` and `@` (not `/nolog`, not `/ as sysdba`).
fn sqlplus(a: &Arg<'_>, i: usize, out: &mut Vec<Found>) {
    let b = a.bytes;
    let Some(slash) = b.iter().position(|&c| c == b'/') else {
        return;
    };
    if slash == 0 {
        return;
    }
    let end = b[slash..]
        .iter()
        .position(|&c| c == b'@' || c == b'"' || c == b'\'')
        .map_or(b.len(), |e| slash + e);
    if end > slash + 1 {
        out.push(found(i, slash + 1, end));
    }
}

fn found(arg: usize, start: usize, end: usize) -> Found {
    Found {
        arg,
        start,
        end,
        name: "cli_credential",
    }
}

/// Records the secret part of the value at `span` of argument `a`.
fn push(a: &Arg<'_>, i: usize, span: Option<(usize, usize)>, part: Part, out: &mut Vec<Found>) {
    let Some((vs, ve)) = span else {
        return;
    };
    let b = a.bytes;
    let (start, end) = match part {
        Part::Whole => (vs, ve),
        Part::After(sep) => match find_outside_markers(b, vs, ve, sep) {
            Some(at) => (at + 1, ve),
            None => return,
        },
        Part::AfterPrefix(p) if b[vs..ve].starts_with(p.as_bytes()) => (vs + p.len(), ve),
        Part::AfterPrefix(_) => return,
        Part::Cookies => {
            let mut hits = Vec::new();
            cookie_values(b, vs, ve, false, true, &mut hits);
            out.extend(hits.into_iter().map(|h| found(i, h.start, h.end)));
            return;
        }
    };
    if start < end && b[start] != b'$' {
        out.push(found(i, start, end));
    }
}

// ---- Command lines in text ----

/// The most arguments read after one program name.
const MAX_ARGS: usize = 64;

/// Bytes that end a command (outside quotes).
fn ends_command(c: u8) -> bool {
    matches!(
        c,
        b'\n' | b'\r' | b';' | b'|' | b'&' | b')' | b'`' | b'<' | b'>'
    )
}

/// Bytes of a program name.
fn is_name_char(c: &u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/')
}

/// Remembers the last closing-quote search of each kind, so the many command lines
/// read from one text (a trigger may sit inside another command's quoted argument)
/// never search the same stretch twice.
pub(super) struct Quotes {
    single: (usize, Option<usize>),
    double: (usize, Option<usize>),
}

impl Quotes {
    pub(super) fn new() -> Self {
        Quotes {
            single: (usize::MAX, None),
            double: (usize::MAX, None),
        }
    }

    /// The next unescaped `q` at or after `from`. A search from inside the range of
    /// the last one (after its start, up to its result) has the same result.
    fn close(&mut self, b: &[u8], from: usize, q: u8) -> Option<usize> {
        let last = if q == b'\'' {
            &mut self.single
        } else {
            &mut self.double
        };
        let (start, result) = *last;
        if start <= from && result.is_none_or(|r| from <= r) {
            return result;
        }
        let result = closing_quote(b, from, q);
        *last = (from, result);
        result
    }
}

/// A program name found at `at` (by its trigger): when it is a word of its own
/// followed by arguments, applies its rules to them.
pub(super) fn command_at(b: &[u8], at: usize, quotes: &mut Quotes, hits: &mut Vec<Hit<'_>>) {
    let start = run_back(b, at, is_name_char);
    let end = run(b, at, is_name_char);
    let starts_word =
        start == 0 || matches!(b[start - 1], b' ' | b'\t' | b'"' | b'\'' | b'(' | b'{');
    if !b.get(end).is_some_and(is_blank) || !(starts_word || ends_command(b[start - 1])) {
        return;
    }
    let Some(cmd) = command(&b[start..end]) else {
        return;
    };
    // `git status`, `aws s3 ls`: no need to read a command that lacks its subcommand.
    if let Some(need) = cmd.needs.first() {
        let near = &b[end..b.len().min(end + 1024)];
        if !super::scan::contains(near, need.as_bytes()) {
            return;
        }
    }
    let args = text_args(b, end, quotes);
    let mut found = Vec::new();
    apply(cmd, &args, &mut found);
    for f in found {
        let base = args[f.arg].at;
        hits.push(Hit::new(
            base + f.start,
            base + f.end,
            RANK_ARGUMENT,
            f.name,
        ));
    }
}

/// The arguments from `from` to the end of the command (at most [`MAX_ARGS`]), split
/// at blanks outside quotes (a backslash escapes the next byte; `\` + newline
/// continues the line).
fn text_args<'a>(b: &'a [u8], from: usize, quotes: &mut Quotes) -> Vec<Arg<'a>> {
    let mut args = Vec::new();
    let mut i = from;
    loop {
        loop {
            i = run(b, i, is_blank);
            if b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'\n') {
                i += 2;
            } else {
                break;
            }
        }
        if i >= b.len() || ends_command(b[i]) || args.len() == MAX_ARGS {
            return args;
        }
        let start = i;
        while i < b.len() && !is_blank(&b[i]) && !ends_command(b[i]) {
            match b[i] {
                // A quote that never closes is taken as an ordinary character.
                q @ (b'"' | b'\'') => i = quotes.close(b, i + 1, q).map_or(i + 1, |e| e + 1),
                b'\\' => i = (i + 2).min(b.len()),
                _ => i += 1,
            }
        }
        args.push(Arg {
            bytes: &b[start..i],
            at: start,
            literal: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_name_finds_the_first_command_listing_it() {
        for c in COMMANDS {
            for n in c.names {
                let first = COMMANDS.iter().find(|k| k.names.contains(n)).unwrap();
                for spelled in [
                    n.to_string(),
                    n.to_ascii_uppercase(),
                    format!("/usr/bin/{n}"),
                ] {
                    let found = command(spelled.as_bytes()).map(|k| (k.names, k.needs));
                    assert_eq!(found, Some((first.names, first.needs)), "{spelled}");
                }
            }
        }
        for other in ["", "SOC2", "cargo", "curlx", "/", "a/b/", "ssh-keygenx"] {
            assert!(command(other.as_bytes()).is_none(), "{other}");
        }
    }
}
