import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { register } from '../../components/registration.js';
import type { CsContext } from '../../context.js';
import { Name, Timestamp, Uuid } from '../../domain/names.js';
import type { Vault } from '../../trust/vault.js';
import { errors } from '../schemas.js';

const Kind = Type.Union([Type.Literal('agent'), Type.Literal('ps'), Type.Literal('mt')]);

const RegisterBody = Type.Object(
  {
    passphrase: Type.String({ minLength: 1, maxLength: 256, description: 'the vault passphrase (`boomerang cs passphrase`)' }),
    kind: Kind,
    name: Name,
    csrPem: Type.Optional(Type.String({ minLength: 1, maxLength: 16_384, description: 'PEM PKCS#10 request for an ECDSA P-256 key; omit it to have the CS generate the key' })),
    hostnames: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 16, description: 'DNS names and IP addresses for the certificate' })),
  },
  { additionalProperties: false },
);

const RegistrationBody = Type.Object({
  componentId: Uuid,
  kind: Kind,
  name: Type.String(),
  certificatePem: Type.String(),
  privateKeyPem: Type.Optional(Type.String({ description: 'only when the CS generated the key' })),
  caPem: Type.String(),
  token: Type.String({ description: 'bearer token for the component routes' }),
  tokenExpiresAt: Timestamp,
  heartbeatIntervalSeconds: Type.Number(),
});

/** The only route that takes the vault passphrase. */
export const registrationRoutes: FastifyPluginAsync<{ ctx: CsContext; vault: Vault }> = async (app, { ctx, vault }) => {
  app.post<{ Body: Static<typeof RegisterBody> }>(
    '/v1/register',
    {
      schema: {
        summary: 'Register a component (agent, process server, master target) with the vault passphrase',
        tags: ['components'],
        operationId: 'register',
        body: RegisterBody,
        response: { 201: RegistrationBody, ...errors(400, 401) },
      },
    },
    async (req, reply) => {
      const r = await register(ctx, vault, req.body);
      return reply.code(201).send(r);
    },
  );
};
