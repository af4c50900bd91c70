/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Entry point read by fabric-chaincode-node (package.json "main"). The shim
 * registers every class listed in `contracts`; the first one is the default,
 * so transactions can be invoked as "CreateAsset" or "AssetTransfer:CreateAsset".
 */

'use strict';

const AssetTransfer = require('./lib/assetTransfer');

module.exports.AssetTransfer = AssetTransfer;
module.exports.contracts = [AssetTransfer];
