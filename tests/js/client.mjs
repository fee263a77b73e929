// The ollama JavaScript client, used as its README shows, against a running vllama.
//   node client.mjs URL PART GIVEN_JSON
// runs one part (see PARTS) and prints one JSON line of what the client gave back; the test
// (tests/e2e/test_js_client.py) judges it. GIVEN_JSON holds the test's inputs: the model names
// ({"chat": ..., "embed": ...}), the JSON schema for `format` ("schema") and a tool ("tool").
import { Ollama } from 'ollama'

const [host, part, givenJson] = process.argv.slice(2)
const given = JSON.parse(givenJson)
const client = new Ollama({ host })
// Greedy and a fixed length: streamed and whole answers can be compared, and every answer ends
// by length (the random weights could otherwise end at any token).
const FIXED = { temperature: 0, num_predict: 10, ignore_eos: true }
// Long enough that the engine is still at work when the client aborts (about 5 s on a CPU).
const LONG = { num_predict: 2000, ignore_eos: true }
const ASK = [{ role: 'user', content: 'Why is the sky blue?' }]

async function collect (stream) {
  const parts = []
  for await (const part of stream) parts.push(part)
  return parts
}

// What an abort leaves: the parts read before it, and how the client's iteration ended.
async function readThenAbort (stream, abort) {
  let read = 0
  try {
    for await (const part of stream) {
      read += 1
      if (read === 3) abort()
    }
    return { read, ended: 'done' }
  } catch (error) {
    return { read, ended: error.name }
  }
}

async function responseError (call) {
  try {
    await call()
    return null
  } catch (error) {
    return { name: error.name, status: error.status_code, error: error.error }
  }
}

const PARTS = {
  list: async () => (await client.list()).models,
  show: async () => client.show({ model: given.chat }),
  ps: async () => (await client.ps()).models,
  version: async () => client.version(),
  generate: async () => {
    const whole = await client.generate({ model: given.chat, prompt: 'Tell me a story', options: FIXED })
    const parts = await collect(await client.generate({ model: given.chat, prompt: 'Tell me a story', options: FIXED, stream: true }))
    return { whole, parts }
  },
  chat: async () => {
    const whole = await client.chat({ model: given.chat, messages: ASK, options: FIXED })
    const parts = await collect(await client.chat({ model: given.chat, messages: ASK, options: FIXED, stream: true }))
    return { whole, parts }
  },
  // The iterator's own abort, then the client's, which aborts every stream it has open.
  abort_stream: async () => {
    const stream = await client.generate({ model: given.chat, prompt: 'hi', options: LONG, stream: true })
    return readThenAbort(stream, () => stream.abort())
  },
  abort_client: async () => {
    const stream = await client.chat({ model: given.chat, messages: ASK, options: LONG, stream: true })
    return readThenAbort(stream, () => client.abort())
  },
  format: async () => {
    const schema = given.schema
    const whole = await client.chat({ model: given.chat, messages: ASK, format: schema, options: { temperature: 0, num_predict: 200 } })
    const parts = await collect(await client.chat({
      model: given.chat, messages: ASK, format: schema, options: { temperature: 0, num_predict: 200 }, stream: true
    }))
    const json = await client.generate({ model: given.chat, prompt: 'Some JSON:', format: 'json', options: { temperature: 0, num_predict: 200 } })
    return { whole, streamed: parts.map((p) => p.message.content).join(''), json }
  },
  embed: async () => {
    const many = await client.embed({ model: given.embed, input: ['The sky is blue.', 'Grass is green.'] })
    const one = await client.embed({ model: given.embed, input: 'The sky is blue.' })
    const legacy = await client.embeddings({ model: given.embed, prompt: 'The sky is blue.' })
    return { many, one, legacy }
  },
  // A forced call (vllama's `tool_choice` option): the random model never calls a tool by itself.
  tools: async () => client.chat({
    model: given.chat,
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    tools: [given.tool],
    options: { temperature: 0, num_predict: 120, tool_choice: 'required' }
  }),
  errors: async () => ({
    chat: await responseError(() => client.chat({ model: 'no-such-model', messages: ASK })),
    stream: await responseError(async () => collect(await client.generate({ model: 'no-such-model', prompt: 'hi', stream: true }))),
    show: await responseError(() => client.show({ model: 'no-such-model' })),
    embed: await responseError(() => client.embed({ model: 'no-such-model', input: 'hi' })),
    bad_option: await responseError(() => client.generate({ model: given.chat, prompt: 'hi', options: { top_p: 7 } }))
  })
}

console.log(JSON.stringify(await PARTS[part]()))
