#!/usr/bin/env python3
"""Checks the shape of src/ (run by the test command; exits 1 on a violation):

1. No import cycle. Every file of src/ is a node; a `crate::a::b` or `super::x` path in a file
   is an edge to the module file it names (the longest prefix that is a file). A parent
   module's `mod.rs` naming its own children is containment, not an import, and is not an
   edge; a child naming its parent (`super::Thing`) is. Any strongly connected component of
   more than one file is reported as a cycle.
2. The layers import downward only: each top-level module may import only the modules listed
   below it in LAYERS (a module not listed is an error, so a new module must be placed).
3. No function longer than MAX_FUNCTION_LINES lines (test modules excepted).

    python3 scripts/check-structure.py [--graph]   # --graph prints the module graph
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_FUNCTION_LINES = 120

# Top to bottom: a module may import the modules of the lines below its own (and its own).
LAYERS = [
    ["main", "lib"],
    ["server", "tools"],
    ["ports"],
    ["session"],
    ["cluster"],
    ["dispatch"],
    ["metrics"],
    ["shard"],
    ["features", "admission"],
    ["auth", "permission"],
    ["transport", "random"],
    ["protocol"],
    ["logging"],
    ["base"],
]


def module_files():
    files = {}
    for directory, _, names in os.walk(ROOT):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            files[tuple(parts)] = path
    return files


def strip_tests(text):
    """The text without `#[cfg(test)] mod ... { ... }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for match in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if match.start() < i:
            continue
        out.append(text[i:match.start()])
        depth, j = 1, match.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def resolve(path, files):
    """The longest prefix of `path` that is a module file."""
    for end in range(len(path), 0, -1):
        if tuple(path[:end]) in files:
            return tuple(path[:end])
    return None


def expand_use_groups(text):
    """`use crate::a::{b, c::d};` -> paths crate::a::b, crate::a::c::d (one level of braces)."""
    paths = []
    for match in re.finditer(r"\b(crate|super)((?:::\w+)+)::\{([^{}]*)\}", text):
        base = match.group(1) + match.group(2)
        for item in match.group(3).split(","):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self":
                paths.append(base + "::" + item)
            elif item == "self":
                paths.append(base)
    return paths


def edges_of(module, text, files):
    text = strip_tests(text)
    paths = expand_use_groups(text)
    paths += [m.group(0) for m in re.finditer(r"\b(crate|super)(::\w+)+", text)]
    targets = set()
    for path in paths:
        parts = path.split("::")
        if parts[0] == "crate":
            absolute = parts[1:]
        else:
            here = list(module)
            # `super` of a file module is its parent (a mod.rs module is its own directory)
            while parts and parts[0] == "super":
                here = here[:-1]
                parts = parts[1:]
            absolute = here + parts
        target = resolve(absolute, files)
        if target is None or target == module:
            continue
        # a parent naming its own descendants is containment
        if target[: len(module)] == module:
            continue
        targets.add(target)
    return targets


def cycles(graph):
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(component)

    sys.setrecursionlimit(10000)
    for node in graph:
        if node not in index:
            visit(node)
    return result


def layer_of(top):
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    return None


def long_functions(path):
    text = open(path).read()
    found = []
    lines = text.split("\n")
    in_tests = False
    depth_at_tests = None
    depth = 0
    start = None
    fn_depth = None
    name = None
    for number, line in enumerate(lines, 1):
        code = re.sub(r"//.*", "", line)
        if re.match(r"\s*#\[cfg\(test\)\]", code):
            in_tests = True
            depth_at_tests = depth
        if start is None and not in_tests:
            match = re.match(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)", code)
            if match:
                start, name, fn_depth = number, match.group(6), depth
        for char in code:
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if start is not None and depth == fn_depth:
                    if number - start + 1 > MAX_FUNCTION_LINES:
                        found.append((name, start, number - start + 1))
                    start = None
                if in_tests and depth == depth_at_tests:
                    in_tests = False
        if start is not None and depth == fn_depth and code.rstrip().endswith(";"):
            start = None  # a declaration without a body
    return found


def main():
    files = module_files()
    graph = {module: edges_of(module, open(path).read(), files) for module, path in files.items()}
    problems = []
    for component in cycles(graph):
        names = " -> ".join("::".join(module) or "lib" for module in sorted(component))
        problems.append(f"import cycle between: {names}")
    for module, targets in graph.items():
        top = module[0] if module else "lib"
        rank = layer_of(top)
        if rank is None:
            problems.append(f"src/{'/'.join(module)}: module '{top}' is in no layer of scripts/check-structure.py")
            continue
        for target in targets:
            other = layer_of(target[0])
            if other is not None and other < rank:
                problems.append(
                    f"{'::'.join(module)} imports {'::'.join(target)}: '{target[0]}' is a higher layer than '{top}'"
                )
    for module, path in files.items():
        for name, start, length in long_functions(path):
            problems.append(f"{os.path.relpath(path, os.path.join(ROOT, '..'))}:{start}: fn {name} is {length} lines (at most {MAX_FUNCTION_LINES})")
    if "--graph" in sys.argv:
        for module in sorted(graph):
            print("::".join(module) or "lib", "->", ", ".join(sorted("::".join(t) for t in graph[module])))
    for problem in sorted(set(problems)):
        print(problem)
    if problems:
        print(f"check-structure: {len(set(problems))} problem(s)")
        return 1
    print(f"check-structure: {len(files)} files, no import cycle, layers respected, no function over {MAX_FUNCTION_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
