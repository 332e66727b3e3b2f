// gemini.test.mjs: the Gemini wire format both ways, and Vertex AI with a real service-account OAuth
// exchange, with the official client libraries. A gemini-kind provider account points at the mock's Gemini
// surface and a vertex-kind account at its Vertex surface (tests/mock/README.md, "Gemini API and Vertex
// AI"); the Gemini SDK reaches them through /genai, the OpenAI SDK through /v1 and the Anthropic SDK
// through /anthropic; the Gemini SDK also reaches the OpenAI-kind mock account. Token counts are
// predicted from the mock's scenario, so the assertions are exact.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { GoogleGenAI } from '@google/genai';
import { MODEL, UPSTREAM_MODEL, mockText, randomHex, startCluster, waitHttp, mockVector } from './harness.mjs';

const GEM = 'gemini-mock';
const GEM_UPSTREAM = 'gemini-mock-upstream';
const GEM_EMBED = 'gemini-embed-mock';
const VTX = 'vertex-mock';
const VTX_UPSTREAM = 'vertex-mock-upstream';
const PROJECT = 'e2e-project';
const LOCATION = 'us-central1';

let c;
let seed;
let openai;
let anthropic;
let genai;
let keyDir;

// 4 + ceil(bytes / 4) per message; the system prompt counts as one message.
const tokens = (...texts) => texts.reduce((n, t) => n + 4 + Math.ceil(Buffer.byteLength(t, 'utf8') / 4), 0);
const TOOL_ARGS = [{ location: 'Paris', unit: 'celsius' }, { location: 'Tokyo', unit: 'celsius' }];
const mockLast = async () => (await fetch(`${c.mockUrl}/__mock/last`)).json();
const rid = () => `req_e2e_gem_${randomHex(6)}`;
const withId = (id) => ({ httpOptions: { headers: { 'x-request-id': id } } });
const closeTo = (got, want) => got.every((v, i) => Math.abs(v - want[i]) < 1e-6) && got.length === want.length;

before(async () => {
  c = await startCluster({ dataplanes: 1, label: 'gem' });
  seed = await c.seed();

  // Vertex: the mock verifies service-account assertions with the public half of a key made here.
  keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-e2e-gcp-'));
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pubPath = path.join(keyDir, 'sa.pub.pem');
  fs.writeFileSync(pubPath, publicKey.export({ type: 'spki', format: 'pem' }));
  await c.mock.stop();
  c.mock.args.push('--gcp-public-key', pubPath);
  c.mock.start();
  await waitHttp(c.mock, `${c.mockUrl}/__mock/last`, 'any');

  const gemini = await c.adminOk('POST', '/admin/v1/providers', {
    name: 'mock-gemini', kind: 'gemini', base_url: c.mockUrl, settings: {},
    api_keys: [{ secret: c.mockSecret }],
  });
  const serviceAccount = {
    type: 'service_account', project_id: PROJECT, private_key_id: randomHex(8),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: `tollgate-e2e@${PROJECT}.iam.gserviceaccount.com`, token_uri: `${c.mockUrl}/token`,
  };
  const vertex = await c.adminOk('POST', '/admin/v1/providers', {
    name: 'mock-vertex', kind: 'vertex', base_url: c.mockUrl, settings: { project: PROJECT, location: LOCATION },
    api_keys: [{ secret: JSON.stringify(serviceAccount) }],
  });
  await c.createRoute(GEM, gemini.id, GEM_UPSTREAM);
  await c.createRoute(GEM_EMBED, gemini.id, 'text-embedding-mock');
  await c.createRoute(VTX, vertex.id, VTX_UPSTREAM);
  for (const m of [GEM, GEM_EMBED, VTX]) await c.waitModelVisible(seed.key.key, m);

  const dp = c.dataplanes[0].url;
  openai = new OpenAI({ apiKey: seed.key.key, baseURL: `${dp}/v1`, maxRetries: 0, timeout: 30000 });
  anthropic = new Anthropic({ apiKey: seed.key.key, baseURL: `${dp}/anthropic`, maxRetries: 0, timeout: 30000 });
  genai = new GoogleGenAI({ apiKey: seed.key.key, httpOptions: { baseUrl: `${dp}/genai` } });
});

after(async () => {
  await c?.stop();
  if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
});

describe('Gemini SDK → Gemini provider', () => {
  test('generateContent: text, usage with cache, the upstream request', async () => {
    const id = rid();
    const text = 'hi there [mock:tokens=5,cached=4]';
    const res = await genai.models.generateContent({
      model: GEM,
      contents: [{ role: 'user', parts: [{ text }] }],
      config: {
        ...withId(id), systemInstruction: 'be brief', temperature: 0.5, topP: 0.9, topK: 20, maxOutputTokens: 100,
        stopSequences: ['ZZZ'], seed: 7, thinkingConfig: { thinkingBudget: 0 },
        safetySettings: [{ category: 'HARM_CATEGORY_HARASSMENT', threshold: 'BLOCK_NONE' }],
      },
    });
    const P = tokens('be brief', text);
    assert.equal(res.text, mockText(5));
    assert.equal(res.candidates[0].finishReason, 'STOP');
    assert.equal(res.usageMetadata.promptTokenCount, P); // Gemini counts the cache inside
    assert.equal(res.usageMetadata.cachedContentTokenCount, 4);
    assert.equal(res.usageMetadata.candidatesTokenCount, 5);
    assert.equal(res.usageMetadata.totalTokenCount, P + 5);

    const last = await mockLast();
    assert.equal(last.path, `/v1beta/models/${GEM_UPSTREAM}:generateContent`);
    assert.equal(last.headers['x-goog-api-key'], c.mockSecret);
    assert.deepEqual(last.body.systemInstruction.parts, [{ text: 'be brief' }]);
    assert.deepEqual(last.body.contents, [{ role: 'user', parts: [{ text }] }]);
    const gc = last.body.generationConfig;
    assert.equal(gc.maxOutputTokens, 100);
    assert.equal(gc.topK, 20);
    assert.equal(gc.seed, 7);
    assert.deepEqual(gc.stopSequences, ['ZZZ']);
    assert.deepEqual(gc.thinkingConfig, { thinkingBudget: 0 }); // Gemini-only members pass through
    assert.equal(last.body.safetySettings[0].threshold, 'BLOCK_NONE');

    const [row] = await c.waitUsage([id]);
    assert.equal(row.input_tokens, P);
    assert.equal(row.cached_input_tokens, 4);
    assert.equal(row.output_tokens, 5);
    assert.equal(row.upstream_model, GEM_UPSTREAM);
  });

  test('streamGenerateContent: chunks, the finish reason and the final usage', async () => {
    const text = 'stream please [mock:tokens=7]';
    const stream = await genai.models.generateContentStream({ model: GEM, contents: text });
    let joined = '';
    let lastChunk;
    for await (const chunk of stream) {
      joined += chunk.text ?? '';
      lastChunk = chunk;
    }
    assert.equal(joined, mockText(7));
    assert.equal(lastChunk.candidates[0].finishReason, 'STOP');
    assert.equal(lastChunk.usageMetadata.promptTokenCount, tokens(text));
    assert.equal(lastChunk.usageMetadata.candidatesTokenCount, 7);
    const last = await mockLast();
    assert.equal(last.path, `/v1beta/models/${GEM_UPSTREAM}:streamGenerateContent?alt=sse`);
  });

  test('maxOutputTokens cuts the reply: MAX_TOKENS', async () => {
    const res = await genai.models.generateContent({ model: GEM, contents: 'long', config: { maxOutputTokens: 3 } });
    assert.equal(res.text, mockText(3));
    assert.equal(res.candidates[0].finishReason, 'MAX_TOKENS');
  });

  test('tool calls: declarations, calls with ids, and the round trip of the results', async () => {
    const tools = [{ functionDeclarations: [{
      name: 'get_weather', description: 'Current weather',
      parameters: { type: 'OBJECT', properties: { location: { type: 'STRING' }, unit: { type: 'STRING' } },
        required: ['location'] },
    }] }];
    const ask = { role: 'user', parts: [{ text: 'weather? [mock:tool_calls=2]' }] };
    const res = await genai.models.generateContent({
      model: GEM, contents: [ask],
      config: { tools, toolConfig: { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] } } },
    });
    const calls = res.functionCalls;
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.map((f) => f.name), ['get_weather', 'get_weather']);
    assert.deepEqual(calls.map((f) => f.args), TOOL_ARGS);
    assert.ok(calls.every((f) => typeof f.id === 'string' && f.id.length > 0), 'the gateway makes ids up');
    assert.notEqual(calls[0].id, calls[1].id);
    assert.equal(res.candidates[0].finishReason, 'STOP'); // Gemini's own spelling of tool use
    let last = await mockLast();
    assert.equal(last.body.tools[0].functionDeclarations[0].parameters.type, 'OBJECT');
    assert.deepEqual(last.body.toolConfig.functionCallingConfig, { mode: 'ANY', allowedFunctionNames: ['get_weather'] });

    // the client sends the calls back with their results, without ids as older SDK code does
    const res2 = await genai.models.generateContent({
      model: GEM,
      contents: [ask, res.candidates[0].content,
        { role: 'user', parts: calls.map((f, i) => ({ functionResponse: { name: f.name, response: { temp: 20 + i } } })) },
      ],
      config: { tools },
    });
    assert.equal(res2.functionCalls.length, 2); // the directive sits in the ask, the last user text
    last = await mockLast();
    assert.equal(last.body.contents.length, 3);
    assert.deepEqual(last.body.contents[1].parts.map((p) => p.functionCall.name), ['get_weather', 'get_weather']);
    assert.deepEqual(last.body.contents[2].parts.map((p) => p.functionResponse.response), [{ temp: 20 }, { temp: 21 }]);
  });

  test('tool calls in a stream arrive whole', async () => {
    const stream = await genai.models.generateContentStream({
      model: GEM, contents: 'go [mock:tool_calls=2]',
      config: { tools: [{ functionDeclarations: [{ name: 'alpha' }, { name: 'beta' }] }] },
    });
    const calls = [];
    for await (const chunk of stream) calls.push(...(chunk.functionCalls ?? []));
    assert.deepEqual(calls.map((f) => [f.name, f.args]), [['alpha', TOOL_ARGS[0]], ['beta', TOOL_ARGS[1]]]);
  });

  test('countTokens and embedContent', async () => {
    const count = await genai.models.countTokens({ model: GEM, contents: 'count these words' });
    assert.equal(count.totalTokens, tokens('count these words'));
    assert.equal((await mockLast()).path, `/v1beta/models/${GEM_UPSTREAM}:countTokens`);

    const r = await fetch(`${c.dataplanes[0].url}/genai/v1beta/models/${GEM_EMBED}:embedContent`, {
      method: 'POST', headers: { 'x-goog-api-key': seed.key.key, 'content-type': 'application/json' },
      body: JSON.stringify({ content: { parts: [{ text: 'single' }] } }),
    });
    assert.equal(r.status, 200);
    const one = await r.json();
    assert.ok(closeTo(one.embedding.values, mockVector('single')));
    assert.equal((await mockLast()).path, '/v1beta/models/text-embedding-mock:embedContent');
  });

  test('the SDK embeds through :batchEmbedContents', async () => {
    const emb = await genai.models.embedContent({ model: GEM_EMBED, contents: ['hello', 'world!'],
      config: { outputDimensionality: 4 } });
    assert.equal(emb.embeddings.length, 2);
    assert.ok(closeTo(emb.embeddings[0].values, mockVector('hello', 4)));
    assert.ok(closeTo(emb.embeddings[1].values, mockVector('world!', 4)));
  });

  test('errors: the provider status comes back as a Gemini error', async () => {
    for (const [status, name] of [[429, 'RESOURCE_EXHAUSTED'], [503, 'UNAVAILABLE'], [400, 'INVALID_ARGUMENT']]) {
      const res = await fetch(`${c.dataplanes[0].url}/genai/v1beta/models/${GEM}:generateContent`, {
        method: 'POST', headers: { 'x-goog-api-key': seed.key.key, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ parts: [{ text: `x [mock:status=${status}]` }] }] }),
      });
      assert.equal(res.status, status);
      const body = await res.json();
      assert.equal(body.error.code, status);
      assert.equal(body.error.status, name);
      assert.ok(body.error.message.length > 0);
    }
    await assert.rejects(genai.models.generateContent({ model: GEM, contents: 'x [mock:status=429]' }),
      (err) => err.status === 429);
  });

  test('an error in the middle of a stream reaches the SDK as an error', async () => {
    const stream = await genai.models.generateContentStream({ model: GEM, contents: 'x [mock:tokens=6,error_after=2]' });
    let got = '';
    await assert.rejects((async () => {
      for await (const chunk of stream) got += chunk.text ?? '';
    })(), (err) => err.status >= 500);
    assert.equal(got, mockText(2));
  });
});

describe('other SDKs → Gemini provider', () => {
  test('OpenAI SDK: chat, usage, cached tokens', async () => {
    const text = 'hello gemini [mock:tokens=6,cached=2]';
    const res = await openai.chat.completions.create({
      model: GEM, messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: text }],
      max_tokens: 50, temperature: 0.3, stop: ['ZZZ'], seed: 3,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object',
        properties: { a: { type: 'string', format: 'email' } }, additionalProperties: false } } },
    });
    assert.equal(res.choices[0].message.content, mockText(6));
    assert.equal(res.choices[0].finish_reason, 'stop');
    assert.equal(res.usage.prompt_tokens, tokens('sys', text));
    assert.equal(res.usage.prompt_tokens_details.cached_tokens, 2);
    assert.equal(res.usage.completion_tokens, 6);
    const last = await mockLast();
    assert.equal(last.body.systemInstruction.parts[0].text, 'sys');
    assert.equal(last.body.generationConfig.responseMimeType, 'application/json');
    const schema = last.body.generationConfig.responseSchema;
    assert.equal(schema.type, 'OBJECT');
    assert.equal(schema.additionalProperties, undefined); // Gemini rejects it
    assert.equal(schema.properties.a.format, undefined);
  });

  test('OpenAI SDK: tool calls, streamed, then the results go back as functionResponse parts', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: {
      type: 'object', properties: { location: { type: 'string' }, unit: { type: ['string', 'null'] } },
      required: ['location'], additionalProperties: false } } }];
    const messages = [{ role: 'user', content: 'weather in two cities [mock:tool_calls=2]' }];
    const stream = await openai.chat.completions.create({ model: GEM, messages, tools, stream: true });
    const calls = [];
    let finish;
    for await (const chunk of stream) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      for (const tc of ch.delta.tool_calls ?? []) {
        calls[tc.index] ??= { id: tc.id, name: tc.function?.name, args: '' };
        calls[tc.index].args += tc.function?.arguments ?? '';
      }
      finish = ch.finish_reason ?? finish;
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.map((t) => JSON.parse(t.args)), TOOL_ARGS);
    let last = await mockLast();
    const params = last.body.tools[0].functionDeclarations[0].parameters;
    assert.equal(params.type, 'OBJECT');
    assert.equal(params.properties.unit.nullable, true);
    assert.equal(params.additionalProperties, undefined);

    const res = await openai.chat.completions.create({
      model: GEM, tools,
      messages: [...messages,
        { role: 'assistant', content: null, tool_calls: calls.map((t) => ({ id: t.id, type: 'function',
          function: { name: t.name, arguments: t.args } })) },
        { role: 'tool', tool_call_id: calls[0].id, content: 'sunny' },
        { role: 'tool', tool_call_id: calls[1].id, content: '{"sky":"rain"}' }],
    });
    assert.equal(res.choices[0].finish_reason, 'tool_calls'); // the ask still carries the directive
    last = await mockLast();
    assert.deepEqual(last.body.contents.map((x) => x.role), ['user', 'model', 'user']);
    assert.deepEqual(last.body.contents[2].parts.map((p) => p.functionResponse), [
      { name: 'get_weather', response: { result: 'sunny' } },
      { name: 'get_weather', response: { sky: 'rain' } },
    ]);
  });

  test('OpenAI SDK: embeddings', async () => {
    const res = await openai.embeddings.create({ model: GEM_EMBED, input: ['abc', 'defgh'] });
    assert.equal(res.data.length, 2);
    assert.ok(closeTo(res.data[1].embedding, mockVector('defgh')));
    const last = await mockLast();
    assert.equal(last.path, '/v1beta/models/text-embedding-mock:batchEmbedContents');
    assert.equal(last.body.requests[0].model, 'models/text-embedding-mock');
  });

  test('Anthropic SDK: a message and a stream; input excludes the cache the Anthropic way', async () => {
    const text = 'from claude land [mock:tokens=4,cached=3]';
    const msg = await anthropic.messages.create({
      model: GEM, max_tokens: 64, system: 'sys', messages: [{ role: 'user', content: text }],
    });
    assert.equal(msg.content[0].text, mockText(4));
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.input_tokens, tokens('sys', text) - 3);
    assert.equal(msg.usage.cache_read_input_tokens, 3);
    assert.equal(msg.usage.output_tokens, 4);

    const final = await anthropic.messages.stream({
      model: GEM, max_tokens: 64, messages: [{ role: 'user', content: 'call [mock:tool_calls=1]' }],
      tools: [{ name: 'get_weather', input_schema: { type: 'object', properties: { location: { type: 'string' } } } }],
    }).finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const use = final.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(use.input, TOOL_ARGS[0]);
  });
});

describe('Gemini SDK → OpenAI provider', () => {
  test('generateContent and a stream through the OpenAI-kind mock account', async () => {
    const text = 'hello openai [mock:tokens=6]';
    const res = await genai.models.generateContent({ model: MODEL, contents: text, config: { systemInstruction: 'sys' } });
    assert.equal(res.text, mockText(6));
    assert.equal(res.usageMetadata.promptTokenCount, tokens('sys', text));
    assert.equal(res.usageMetadata.candidatesTokenCount, 6);
    const last = await mockLast();
    assert.equal(last.body.model, UPSTREAM_MODEL);
    assert.deepEqual(last.body.messages[0], { role: 'system', content: 'sys' });

    let joined = '';
    for await (const chunk of await genai.models.generateContentStream({ model: MODEL, contents: text })) {
      joined += chunk.text ?? '';
    }
    assert.equal(joined, mockText(6));
  });
});

describe('Vertex AI with a service account', () => {
  test('the gateway trades the key for a token and calls Vertex with it', async () => {
    const id = rid();
    const text = 'vertex hi [mock:tokens=3,cached=1]';
    const res = await openai.chat.completions.create({ model: VTX, messages: [{ role: 'user', content: text }] },
      { headers: { 'x-request-id': id } });
    assert.equal(res.choices[0].message.content, mockText(3));
    assert.equal(res.usage.prompt_tokens, tokens(text));
    assert.equal(res.usage.prompt_tokens_details.cached_tokens, 1);
    const last = await mockLast();
    assert.equal(last.path,
      `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/google/models/${VTX_UPSTREAM}:generateContent`);
    assert.match(last.headers.authorization, /^Bearer ya29\.mock-\d+$/);
    assert.equal(last.headers['x-goog-api-key'], undefined);
    assert.ok(last.body.contents.every((x) => x.role === 'user' || x.role === 'model'));

    // the token is cached: the next call uses the same one
    await openai.chat.completions.create({ model: VTX, messages: [{ role: 'user', content: 'again' }] });
    assert.equal((await mockLast()).headers.authorization, last.headers.authorization);

    const [row] = await c.waitUsage([id]);
    assert.equal(row.input_tokens, tokens(text));
    assert.equal(row.cached_input_tokens, 1);
    assert.equal(row.output_tokens, 3);
  });

  test('Gemini SDK stream through Vertex, with tool calls', async () => {
    const stream = await genai.models.generateContentStream({
      model: VTX, contents: 'tools [mock:tool_calls=1]',
      config: { tools: [{ functionDeclarations: [{ name: 'get_weather' }] }] },
    });
    const calls = [];
    for await (const chunk of stream) calls.push(...(chunk.functionCalls ?? []));
    assert.deepEqual(calls.map((f) => [f.name, f.args]), [['get_weather', TOOL_ARGS[0]]]);
    const last = await mockLast();
    assert.ok(last.path.endsWith(`/models/${VTX_UPSTREAM}:streamGenerateContent?alt=sse`));
  });
});
