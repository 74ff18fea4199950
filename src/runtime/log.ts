import { pino, type Logger } from 'pino';

/**
 * One JSON logger per process, carrying the component name. Fields named like secrets are
 * redacted at the source so a token can never reach a log line.
 */
export function createLogger(component: string, level = process.env.BOOMERANG_LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name: component,
    level,
    redact: { paths: ['token', '*.token', 'authorization', '*.authorization', 'req.headers.authorization', 'key', '*.key'], censor: '[redacted]' },
  });
}

export type { Logger };
