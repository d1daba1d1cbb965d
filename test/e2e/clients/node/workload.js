'use strict'
// node-postgres workload for pgtenant's client compatibility suite.
//
// Run by test/e2e/compat_node_test.go; the workload and the environment it
// reads are described in test/e2e/compat_clients_test.go. Parameterized
// queries use the extended protocol; queries with a `name` are named
// prepared statements that node-postgres parses once per connection and
// binds on every later use, across transactions. COPY goes through
// pg-copy-streams, cancel through pg's own Client#cancel (a CancelRequest on
// a second connection). Exits non-zero on the first failed check.

const assert = require('node:assert/strict')
const { Readable } = require('node:stream')
const { pipeline } = require('node:stream/promises')
const { Client, Query } = require('pg')
const { to: copyTo, from: copyFrom } = require('pg-copy-streams')

const CLIENT = 'node-postgres'

function config(org, extra) {
  return {
    host: process.env.PGT_HOST,
    port: Number(process.env.PGT_PORT),
    database: process.env.PGT_DATABASE,
    user: 'app',
    password: process.env['PGT_TOKEN_' + org.toUpperCase()],
    ssl: false,
    connectionTimeoutMillis: 10000,
    application_name: 'compat-node',
    ...extra,
  }
}

async function visible(c, org, want) {
  const s = await c.query({ name: 'setting', text: "SELECT current_setting('app.current_org', true) AS s" })
  assert.equal(s.rows[0].s, org, 'current_setting')
  const r = await c.query({
    name: 'visible',
    text: 'SELECT org_id, name FROM items WHERE id > $1 ORDER BY id',
    values: [0],
  })
  assert.deepEqual(r.rows.map((x) => x.name), want, `${org} saw ${JSON.stringify(r.rows)}`)
  for (const x of r.rows) assert.equal(x.org_id, org, `${org} saw another tenant's row`)
}

// Two named statements executed 40 times each, alternately inside
// BEGIN ... COMMIT and in autocommit mode.
async function preparedReuse(c, org, want) {
  for (let i = 0; i < 40; i++) {
    const tx = i % 2 === 0
    if (tx) await c.query('BEGIN')
    const r = await c.query({
      name: 'count-items',
      text: "SELECT count(*)::int AS n, current_setting('app.current_org') AS s FROM items WHERE name <> $1",
      values: [`nothing-${i}`],
    })
    assert.deepEqual(r.rows[0], { n: want.length, s: org }, `execution ${i}`)
    const sum = await c.query({ name: 'sum', text: 'SELECT $1::int + 1 AS v', values: [i] })
    assert.equal(sum.rows[0].v, i + 1, `execution ${i}: sum`)
    if (tx) await c.query('COMMIT')
  }
}

async function crudRolledBack(c, org, want) {
  const marker = `compat-${CLIENT}-${org}`
  await c.query('BEGIN')
  const ins = await c.query('INSERT INTO items (name) VALUES ($1) RETURNING org_id', [marker])
  assert.equal(ins.rows[0].org_id, org, 'insert took org_id from the context')
  const n = await c.query('SELECT count(*)::int AS n FROM items WHERE id > $1', [0])
  assert.equal(n.rows[0].n, want.length + 1, 'the inserted row is visible in its transaction')
  let r = await c.query('UPDATE items SET name = $1 WHERE name = $2', [marker + '-updated', marker])
  assert.equal(r.rowCount, 1, 'update of the new row')
  r = await c.query('UPDATE items SET name = name WHERE org_id <> $1', [org])
  assert.equal(r.rowCount, 0, "update reached other tenants' rows")
  r = await c.query('DELETE FROM items WHERE org_id <> $1', [org])
  assert.equal(r.rowCount, 0, "delete reached other tenants' rows")
  r = await c.query('DELETE FROM items WHERE name = $1', [marker + '-updated'])
  assert.equal(r.rowCount, 1, 'delete of the new row')
  await c.query('INSERT INTO items (name) VALUES ($1)', [marker])
  await c.query('ROLLBACK')
  r = await c.query('SELECT count(*)::int AS n FROM items WHERE name LIKE $1', [marker + '%'])
  assert.equal(r.rows[0].n, 0, 'rows of a rolled-back transaction are visible')

  // An error aborts the transaction; ROLLBACK makes the session usable.
  await c.query('BEGIN')
  await assert.rejects(c.query('SELECT 1 / $1::int', [0]), { code: '22012' })
  await assert.rejects(c.query({ name: 'sum', text: 'SELECT $1::int + 1 AS v', values: [1] }), { code: '25P02' })
  await c.query('ROLLBACK')
  const sum = await c.query({ name: 'sum', text: 'SELECT $1::int + 1 AS v', values: [1] })
  assert.equal(sum.rows[0].v, 2)
}

// An isolation level as TypeORM, Sequelize and slonik set it: START
// TRANSACTION, then SET TRANSACTION as a statement of its own.
async function isolationAfterBegin(c, org, want) {
  await c.query('START TRANSACTION')
  await c.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE')
  const r = await c.query("SELECT current_setting('transaction_isolation') AS level, count(*)::int AS n FROM items WHERE id > $1", [0])
  assert.deepEqual(r.rows[0], { level: 'serializable', n: want.length }, 'SET TRANSACTION after START TRANSACTION')
  await c.query('COMMIT')
}

// node-postgres's pipeline mode: every query is sent before any reply.
async function pipelined(c, org, want) {
  const p = new Client(config(org, { pipeline: true }))
  await p.connect()
  try {
    const marker = `compat-${CLIENT}-pipeline-${org}`
    const [, ins, cnt, s, , after] = await Promise.all([
      p.query('BEGIN'),
      p.query('INSERT INTO items (name) VALUES ($1) RETURNING org_id', [marker]),
      p.query({ name: 'count-marker', text: 'SELECT count(*)::int AS n FROM items WHERE name = $1', values: [marker] }),
      p.query({ name: 'pipe-setting', text: "SELECT current_setting('app.current_org') AS s" }),
      p.query('ROLLBACK'),
      p.query({ name: 'count-marker', text: 'SELECT count(*)::int AS n FROM items WHERE name = $1', values: [marker] }),
    ])
    assert.equal(ins.rows[0].org_id, org, 'pipelined insert org_id')
    assert.equal(cnt.rows[0].n, 1, 'pipelined select sees the insert')
    assert.equal(s.rows[0].s, org, 'pipelined setting')
    assert.equal(after.rows[0].n, 0, 'a rolled-back pipelined insert is visible')
    await visible(p, org, want)
  } finally {
    await p.end()
  }
}

async function copyBothWays(c, org, want) {
  const chunks = []
  const out = c.query(copyTo('COPY (SELECT org_id, name FROM items ORDER BY id) TO STDOUT'))
  for await (const chunk of out) chunks.push(chunk)
  const text = Buffer.concat(chunks).toString()
  assert.equal(text, want.map((n) => `${org}\t${n}\n`).join(''), 'COPY TO')

  const marker = `compat-${CLIENT}-copy-${org}`
  await c.query('BEGIN')
  const lines = Array.from({ length: 500 }, (_, i) => `${i}\t${marker}\n`)
  const into = c.query(copyFrom('COPY app_owned (id, note) FROM STDIN'))
  await pipeline(Readable.from(lines), into)
  assert.equal(into.rowCount, 500, 'COPY FROM row count')
  let r = await c.query('SELECT count(*)::int AS n FROM app_owned WHERE note = $1', [marker])
  assert.equal(r.rows[0].n, 500, 'copied rows are visible in their transaction')
  await c.query('ROLLBACK')
  r = await c.query('SELECT count(*)::int AS n FROM app_owned WHERE note = $1', [marker])
  assert.equal(r.rows[0].n, 0, 'rows copied in a rolled-back transaction are visible')
}

// pg's Client#cancel opens a second connection that sends a CancelRequest
// with c's processID and secretKey. (It reads the deprecated
// Client#activeQuery itself, hence a DeprecationWarning on stderr.)
async function cancel(c, org) {
  const q = new Query('SELECT pg_sleep(30)')
  const done = new Promise((resolve, reject) => {
    q.on('error', resolve)
    q.on('end', () => reject(new Error('pg_sleep(30) was not canceled')))
  })
  const start = Date.now()
  c.query(q)
  const timer = setTimeout(() => new Client(config(org)).cancel(c, q), 300)
  try {
    const err = await done
    assert.equal(err.code, '57014', `got ${err}`)
  } finally {
    clearTimeout(timer)
  }
  const took = Date.now() - start
  assert.ok(took < 10000, `the cancel took ${took}ms`)
}

const steps = [visible, preparedReuse, crudRolledBack, isolationAfterBegin, pipelined, copyBothWays, cancel, visible]

async function main() {
  for (const org of process.env.PGT_TENANTS.split(',')) {
    const want = process.env['PGT_ROWS_' + org.toUpperCase()].split(',')
    const c = new Client(config(org))
    await c.connect()
    try {
      for (const step of steps) {
        const start = Date.now()
        try {
          await step(c, org, want)
        } catch (err) {
          console.log(`FAIL ${org}: ${step.name}: ${err.stack || err}`)
          throw err
        }
        console.log(`ok ${org}: ${step.name} (${((Date.now() - start) / 1000).toFixed(2)}s)`)
      }
    } finally {
      await c.end()
    }
  }
  console.log(`node ${process.version}, pg ${require('pg/package.json').version}: all checks passed`)
}

main().catch(() => {
  process.exitCode = 1
})
