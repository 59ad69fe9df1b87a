//! Reading a callgrind profile: the instructions executed in one object (the measured binary),
//! not in the shared libraries it calls.
//!
//! What the C library executes depends on the machine: glibc picks its `memcpy` by the CPU's
//! features and sizes its copies by the cache's size. The gate counts only the instructions of
//! the binary itself (Hive's code, the Rust standard library and the allocator linked into it:
//! see `size_classes`), so its verdict is the same on every machine.

use std::collections::HashMap;

/// One profile of callgrind's format (one event: `Ir`), read for one object.
#[derive(Debug, Default)]
pub struct Profile<'a> {
    /// The object's own instructions by the function they ran in (callgrind's `fn=`: the
    /// symbol's outermost function, since callgrind does not read inlining information; a basic
    /// block's `fl=` file, by contrast, is that of its first instruction, often a generic or
    /// inlined function's source).
    pub by_function: HashMap<&'a str, u64>,
    /// The profile's total, every object's instructions.
    pub total: Option<u64>,
}

impl Profile<'_> {
    /// The object's own instructions.
    pub fn own(&self) -> u64 {
        self.by_function.values().sum()
    }
}

/// Reads `text` for the object whose file name ends with `object`: the costs that ran in it,
/// not what its calls into other objects cost.
pub fn read<'a>(text: &'a str, object: &str) -> Profile<'a> {
    // Callgrind compresses objects, files and functions in three separate id spaces.
    let mut objects: HashMap<&str, &str> = HashMap::new();
    let mut functions: HashMap<&str, &str> = HashMap::new();
    let mut in_object = false;
    let mut function = "";
    let mut next_is_call_cost = false;
    let mut profile = Profile::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ob=") {
            in_object = resolve(&mut objects, rest).ends_with(object);
        } else if let Some(rest) = line.strip_prefix("cob=") {
            // Names the callee's object, and may define its compressed name for later.
            resolve(&mut objects, rest);
        } else if let Some(rest) = line.strip_prefix("fn=") {
            function = resolve(&mut functions, rest);
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            resolve(&mut functions, rest);
        } else if line.starts_with("calls=") {
            // The cost line after `calls=` is the callee's inclusive cost, not this function's.
            next_is_call_cost = true;
        } else if let Some(rest) = line.strip_prefix("summary:") {
            profile.total = rest.trim().parse().ok();
        } else if let Some(cost) = cost_of(line)
            && !std::mem::take(&mut next_is_call_cost)
            && in_object
        {
            *profile.by_function.entry(function).or_default() += cost;
        }
    }
    profile
}

/// Instructions of the profile `text` that ran in the object whose file name ends with
/// `object`; and the profile's total. `None` when the profile has no total or nothing ran in
/// that object (a gate must not pass on a count of nothing).
pub fn instructions_in(text: &str, object: &str) -> Option<(u64, u64)> {
    let profile = read(text, object);
    let own = profile.own();
    (own > 0).then_some((own, profile.total?))
}

/// The instruction count of a cost line (`position count`, position possibly relative), or
/// `None` for any other line.
fn cost_of(line: &str) -> Option<u64> {
    if !line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
        return None;
    }
    Some(
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

/// `(7) /path` defines id 7 as `/path`; `(7)` refers to it; a plain name is itself.
fn resolve<'a>(names: &mut HashMap<&'a str, &'a str>, spec: &'a str) -> &'a str {
    let Some(rest) = spec.strip_prefix('(') else {
        return spec;
    };
    let Some((id, name)) = rest.split_once(')') else {
        return spec;
    };
    let name = name.trim();
    if name.is_empty() {
        names.get(id).copied().unwrap_or("")
    } else {
        names.insert(id, name);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "\
events: Ir
summary: 1000

ob=(1) /usr/lib/libc.so.6
fl=(1) ???
fn=(1) memcpy
0 300

ob=(2) /repo/target/release/hive-perf
fl=(2) src/main.rs
fn=(2) main
16 50
+2 25
cob=(1)
cfi=(1)
cfn=(1)
calls=3 0
18 300
cob=(3) /usr/lib/ld.so
cfn=(3) start
calls=1 0
* 7
-1 5

ob=(3)
fn=(3)
0 7

ob=(2)
fn=(4) other
0 600
";

    #[test]
    fn only_the_objects_own_costs_count_not_what_its_calls_cost() {
        assert_eq!(
            instructions_in(PROFILE, "release/hive-perf"),
            Some((50 + 25 + 5 + 600, 1000))
        );
        assert_eq!(instructions_in(PROFILE, "libc.so.6"), Some((300, 1000)));
        assert_eq!(instructions_in(PROFILE, "ld.so"), Some((7, 1000)));
        assert_eq!(instructions_in("events: Ir\n", "x"), None);
        assert_eq!(instructions_in(PROFILE, "not-there"), None);
    }

    #[test]
    fn own_costs_go_to_the_function_they_ran_in() {
        let by_function = read(PROFILE, "release/hive-perf").by_function;
        assert_eq!(by_function.get("main"), Some(&(50 + 25 + 5)));
        assert_eq!(by_function.get("other"), Some(&600));
        assert_eq!(by_function.len(), 2);
    }
}
