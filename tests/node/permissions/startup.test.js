'use strict';
// Hostile or broken permissions files must stop the server from starting. Each case starts a
// server of the target (tests/node/lib/permissions.js startServer: file auth, free ports) with
// an otherwise valid rules file that contains one bad entry, at path hostile/<case>/* of
// section record unless said otherwise.
//
// The references validate the file when the permission handler loads it
// (src/permission/config-validator.js, rule-parser.js, path-parser.js), then the dependency
// initialiser throws: the process exits with status 1 (uncaught exception) after printing
// `invalid permission config - <reason>` (2.4.1 wraps it in a TypeError "Cannot create
// property 'code' on string ..."). corestream must exit with status 2 and name the section
// and the path on stderr.
//
// deepstream.io 1.1.1 gaps, asserted as such for target deepstream: its function check is
// /([\w]+)\(/ with no user-function check, so `(function (){...})()` (with a space),
// `(() => true)()` and `user['constructor']['constructor']('...')()` (the Function
// constructor: any code) start. 2.4.1 refuses all three.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');

const TARGET = perm.target();
const REFERENCE = TARGET !== 'corestream';

/** a valid rules file of the target's dialect, as an object */
function baseRules() {
  const rules = {
    record: { '*': { create: true, read: true, write: true, delete: true, listen: true } },
    event: { '*': { publish: true, subscribe: true, listen: true } },
    rpc: { '*': { provide: true, request: true } },
  };
  if (perm.rulesDialect() === 'v2') rules.presence = { '*': { allow: true } };
  return rules;
}

/** a record rule at hostile/<name>/* */
const recordRule = (name, type, rule) => (r) => {
  r.record[`hostile/${name}/*`] = { [type]: rule };
};

/**
 * name, change(rules), section and path corestream must name, the reference's reason
 * ({v1, v2}: the text after `invalid permission config - `; v1: null = 1.1.1 starts), and
 * only: the targets the case applies to (default all)
 */
const CASES = [
  { name: 'the new keyword', change: recordRule('new', 'write', 'new Date().getTime() > 0'), path: 'hostile/new/*', reason: "rule can't contain the new keyword" },
  { name: 'a function definition', change: recordRule('fn', 'write', '(function(){ return true })()'), path: 'hostile/fn/*', reason: { v1: 'function function is not supported', v2: "rule can't contain user functions" } },
  { name: 'a function definition with a space before (', change: recordRule('fnspace', 'write', '(function (){ return true })()'), path: 'hostile/fnspace/*', reason: { v1: null, v2: "rule can't contain user functions" } },
  { name: 'an arrow function', change: recordRule('arrow', 'write', '(() => true)()'), path: 'hostile/arrow/*', reason: { v1: null, v2: "rule can't contain user functions" } },
  { name: 'the Function constructor through brackets', change: recordRule('ctor', 'write', "user['constructor']['constructor']('return 1')() == 1"), path: 'hostile/ctor/*', reason: { v1: null, v2: "function constructor'] is not supported" } },
  { name: 'an unknown function', change: recordRule('fncall', 'write', 'Math.max(1, 2) > 0'), path: 'hostile/fncall/*', reason: 'function max is not supported' },
  { name: 'a syntax error', change: recordRule('syntax', 'write', 'user.id =='), path: 'hostile/syntax/*', reason: 'SyntaxError: Unexpected token' },
  { name: 'an empty rule', change: recordRule('empty', 'write', ''), path: 'hostile/empty/*', reason: "rule can't be empty" },
  { name: 'a rule that is a number', change: recordRule('number', 'write', 1), path: 'hostile/number/*', reason: 'rule must be a string' },
  { name: 'oldData in a create rule', change: recordRule('old', 'create', 'oldData.x == 1'), path: 'hostile/old/*', reason: 'rule create for record does not support oldData' },
  { name: 'data in a read rule', change: recordRule('data', 'read', 'data.x == 1'), path: 'hostile/data/*', reason: 'rule read for record does not support data' },
  { name: 'an unknown rule type', change: recordRule('type', 'update', true), path: 'hostile/type/*', reason: 'unknown rule type update in section record' },
  { name: 'a bad $ variable name', change: (r) => (r.record['hostile/$-x'] = { write: true }), path: 'hostile/$-x', reason: 'invalid variable name $- for path hostile/$-x in section record' },
  { name: 'a path starting with /', change: (r) => (r.record['/hostile/slash'] = { write: true }), path: '/hostile/slash', reason: "path can't start with / for path /hostile/slash in section record" },
  { name: 'an unknown section', change: (r) => (r.foo = { '*': { bar: true } }), section: 'foo', reason: 'unexpected configuration section "foo"' },
  {
    name: 'a section without the "*" path',
    change: (r) => (r.event = { 'hostile/nostar/*': { publish: true, subscribe: true, listen: true } }),
    section: 'event',
    reason: 'missing root entry "*" for section event',
  },
  { name: 'a presence section (1.1.1 has none)', change: (r) => (r.presence = { '*': { allow: true } }), section: 'presence', reason: 'unexpected configuration section "presence"', only: ['deepstream'] },
  { name: 'no presence section (2.4.1 requires one)', change: (r) => delete r.presence, section: 'presence', reason: 'missing configuration section "presence"', only: ['deepstream2'] },
];

describe('hostile permissions files are refused at start', { concurrency: 3 }, () => {
  for (const c of CASES) {
    const section = c.section || 'record';
    const reason = typeof c.reason === 'string' ? c.reason : c.reason && c.reason[TARGET === 'deepstream' ? 'v1' : 'v2'];
    const applies = !c.only || c.only.includes(TARGET);
    const accepted = REFERENCE && reason === null;
    const title = !applies
      ? `${c.name}: skipped, a case of the ${c.only.join('/')} reference's schema only`
      : accepted
        ? `${c.name}: 1.1.1 accepts it and starts (reference gap)`
        : REFERENCE
          ? `${c.name}: refused, exit status 1, "invalid permission config - ${reason}"`
          : `${c.name}: refused, exit status 2, stderr names section ${section}${c.path ? ` and path ${c.path}` : ''}`;
    it(title, { timeout: 20000, skip: applies ? false : `only for target ${c.only.join('/')}` }, async () => {
      const rules = baseRules();
      c.change(rules);
      const server = await perm.startServer(JSON.stringify(rules, null, 1), `startup-${c.path || c.section}`, 10000);
      try {
        if (accepted) {
          assert.equal(server.state, 'ready', `expected 1.1.1 to start:\n${server.output()}`);
          return;
        }
        assert.equal(server.state, 'exited', `the server did not exit (state ${server.state}):\n${server.output()}`);
        assert.doesNotMatch(server.stdout(), /^ready$/m);
        if (REFERENCE) {
          assert.equal(server.exitStatus.code, 1, `exit ${JSON.stringify(server.exitStatus)}:\n${server.output()}`);
          assert.ok(server.output().includes(`invalid permission config - ${reason}`), `output lacks the reason:\n${server.output()}`);
        } else {
          assert.equal(server.exitStatus.code, 2, `exit ${JSON.stringify(server.exitStatus)}:\n${server.output()}`);
          assert.ok(server.stderr().includes(section), `stderr does not name section ${section}:\n${server.stderr()}`);
          if (c.path) assert.ok(server.stderr().includes(c.path), `stderr does not name path ${c.path}:\n${server.stderr()}`);
        }
      } finally {
        await server.stop();
      }
    });
  }
});
