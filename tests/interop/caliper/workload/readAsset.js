'use strict';

const { WorkloadModuleBase } = require('@hyperledger/caliper-core');
const { assetId } = require('./assets');

/** ReadAsset of the assets this worker created in the create-asset round, in turn. */
class ReadAssetWorkload extends WorkloadModuleBase {
    constructor() {
        super();
        this.next = 0;
    }

    async initializeWorkloadModule(workerIndex, totalWorkers, roundIndex, roundArguments, sutAdapter, sutContext) {
        await super.initializeWorkloadModule(workerIndex, totalWorkers, roundIndex, roundArguments, sutAdapter, sutContext);
        this.count = Number(roundArguments.assetsPerWorker);
        if (!Number.isInteger(this.count) || this.count < 1) {
            throw new Error(`assetsPerWorker must be a positive integer, got ${roundArguments.assetsPerWorker}`);
        }
    }

    async submitTransaction() {
        const id = assetId(this.workerIndex, this.next++ % this.count);
        return this.sutAdapter.sendRequests({
            contractId: this.roundArguments.contractId,
            contractFunction: 'ReadAsset',
            contractArguments: [id],
            readOnly: true,
        });
    }
}

module.exports.createWorkloadModule = () => new ReadAssetWorkload();
