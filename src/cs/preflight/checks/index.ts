import type { Check } from '../types.js';
import { COMPONENT_CHECKS } from './components.js';
import { HEALTH_CHECKS } from './health.js';
import { ITEM_CHECKS } from './item.js';
import { RETENTION_CHECKS } from './retention.js';
import { VSPHERE_CHECKS } from './vsphere.js';

/** Every built-in check, in the order reports list them. */
export const BUILTIN_CHECKS: readonly Check[] = [...ITEM_CHECKS, ...COMPONENT_CHECKS, ...RETENTION_CHECKS, ...VSPHERE_CHECKS, ...HEALTH_CHECKS];
