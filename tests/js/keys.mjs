// The ollama JavaScript client against a vllama that asks for a key, passed as users pass it
// (the client's `headers` option). Prints one JSON line of what it saw; the test checks it.
import { Ollama } from 'ollama'

const [host, key, model] = process.argv.slice(2)
const withKey = new Ollama({ host, headers: { Authorization: `Bearer ${key}` } })
const withoutKey = new Ollama({ host })
const listed = (await withKey.list()).models.map((m) => m.name)
const answer = await withKey.generate({ model, prompt: 'hi', options: { num_predict: 3 } })
let refused = null
try {
  await withoutKey.list()
} catch (error) {
  refused = { status: error.status_code, error: error.error }
}
console.log(JSON.stringify({ listed, done: answer.done, refused }))
