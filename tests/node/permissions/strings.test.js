'use strict';
// The string methods a rule may call (startsWith, endsWith, includes, indexOf, match,
// toUpperCase, toLowerCase, trim) and `length`, on event data and on a $variable, plus `now`
// and `action` (tests/fixtures/permissions/rules.yml, event paths str/...).
//
// Per emit: allowed -> forwarded verbatim to the subscriber; false -> the publisher gets
// `E|E|MESSAGE_DENIED|<name>|EVT|<typed data>`; the rule throws (a method called on a number,
// null.length) -> `E|E|MESSAGE_PERMISSION_ERROR|<name>|EVT|<typed data>`. The same on 1.1.1
// and 2.4.1.
const assert = require('node:assert/strict');
const perm = require('../lib/permissions');
const { uid } = require('../lib/util');

const OK = 'ok';
const DENIED = 'MESSAGE_DENIED';
const ERROR = 'MESSAGE_PERMISSION_ERROR';

/** [path below str/ (the id is appended unless the path is complete), typed data, outcome] */
const CASES = [
  ['starts', 'Sok-1', OK],
  ['starts', 'Snok', DENIED],
  ['starts', 'N1', ERROR],
  ['ends', 'Simg.png', OK],
  ['ends', 'Simg.jpg', DENIED],
  ['includes', 'Shayneedlestack', OK],
  ['includes', 'Shaystack', DENIED],
  ['indexof', 'Sxyz', OK],
  ['indexof', 'Syxz', DENIED],
  ['match', 'Sabc', OK],
  ['match', 'SaBc', DENIED],
  ['match', 'S', DENIED],
  ['upper', 'SsHoUt', OK],
  ['upper', 'Swhisper', DENIED],
  ['lower', 'SQUIET', OK],
  ['lower', 'Sloud', DENIED],
  ['trim', 'S  padded  ', OK],
  ['trim', 'Spad ded', DENIED],
  ['length', 'Sabcde', OK],
  ['length', 'Sabcdef', DENIED],
  ['length', 'O[1,2]', OK],
  ['length', 'L', ERROR],
  ['var/van', 'Sx', OK],
  ['var/v1x', 'Sx', OK],
  ['var/vip', 'Sx', DENIED],
  ['var/vxyz', 'Sx', DENIED],
  ['var/abc', 'Sx', DENIED],
  ['now', 'Sx', OK],
  ['then', 'Sx', DENIED],
];

perm.perGeneration('string methods, length, $variables, now and action in publish rules: allowed emits are forwarded, false ones denied, throwing ones a permission error', { timeout: 20000 }, (g) =>
  perm.session(async (clients, raws) => {
    const id = uid('st');
    const nameOf = (p) => (p.includes('/') ? `str/${p}` : `str/${p}/${id}`);
    const [pub, sub] = await Promise.all([g.rawOpen('alice', raws), g.rawOpen('bob', raws)]);
    const names = [...new Set(CASES.map(([p]) => nameOf(p)))];
    for (const name of names) assert.deepEqual(await perm.exchange(sub, `E|S|${name}+`, 1, 0), [`E|A|S|${name}`]);

    const s0 = sub.received.length;
    const forwarded = [];
    const outcomes = [];
    for (const [p, data, outcome] of CASES) {
      const name = nameOf(p);
      const replies = await perm.exchange(pub, `E|EVT|${name}|${data}+`, outcome === OK ? 0 : 1, 50);
      outcomes.push([name, data, replies]);
      if (outcome === OK) forwarded.push(`E|EVT|${name}|${data}`);
    }
    const expected = CASES.map(([p, data, outcome]) => [nameOf(p), data, outcome === OK ? [] : [`E|E|${outcome}|${nameOf(p)}|EVT|${data}`]]);
    assert.deepEqual(outcomes, expected);
    await perm.quiet(sub, 200);
    assert.deepEqual(sub.texts(s0), forwarded);
  })
);
